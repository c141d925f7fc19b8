package enroll

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"github.com/bettertest/bettertest/provision"
)

// Directories that enrollment makes and unenrollment removes whole.
const (
	ConfigDir = "/etc/bettertest"     // the token
	StateDir  = "/var/lib/bettertest" // DataDir and anything else the worker kept
)

// RemoveWant is what unenrolling needs to know of a host.
var RemoveWant = provision.Want{
	Files: []string{BinaryPath, UnitPath},
	Units: []string{UnitName},
	Dirs:  []string{ConfigDir, StateDir},
}

// RemoveSteps is the playbook that undoes enrollment: the worker, its unit,
// binary, token and data, and the local record. Docker and python3 stay: other
// software may use them. The local record goes first, so that a boss stops
// giving the worker new runs before it goes away.
func RemoveSteps(spec Spec) []provision.Step {
	return []provision.Step{
		{Name: "local worker record removed", Plan: spec.planRemoveRecord},
		{Name: "worker service stopped", Plan: planStopService},
		{Name: "worker unit removed", Plan: planRemoveUnit},
		{Name: "bettertest binary removed", Plan: planRemovePath(BinaryPath, false)},
		{Name: "worker token removed", Plan: planRemovePath(ConfigDir, true)},
		{Name: "worker data removed", Plan: planRemovePath(StateDir, true)},
		{Name: "Docker and python3 kept", Plan: func(*provision.Facts) provision.Plan {
			return provision.Plan{Message: "left installed: other software may use them"}
		}},
	}
}

func (spec Spec) planRemoveRecord(f *provision.Facts) provision.Plan {
	if f.Local[localRecord] == "" && f.Local[localTokenSHA] == "" {
		return provision.Plan{Message: spec.RecordFile + " and " + spec.TokenFile + " are gone"}
	}
	return provision.Plan{
		Reason: "removing " + spec.RecordFile + " and " + spec.TokenFile,
		Actions: []provision.Action{{Local: func(context.Context, provision.Host) error {
			for _, p := range []string{spec.RecordFile, spec.TokenFile} {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return err
				}
			}
			return nil
		}}},
		After: func(f *provision.Facts) { f.Local[localRecord], f.Local[localTokenSHA] = "", "" },
	}
}

func planStopService(f *provision.Facts) provision.Plan {
	u := f.Units[UnitName]
	running := u.Active != "inactive" && u.Active != ""
	if !running && u.Enabled != "enabled" {
		return provision.Plan{Message: UnitName + " is not running and not enabled"}
	}
	// disable needs the unit file; a unit whose file is gone can only be stopped.
	script := "systemctl stop " + UnitName
	if u.Enabled == "enabled" {
		script = "systemctl disable --quiet --now " + UnitName
	}
	if u.Active == "failed" {
		script += "\nsystemctl reset-failed " + UnitName
	}
	return provision.Plan{
		Reason:  "stopping and disabling " + UnitName + " (it was " + orUnknown(u.Active) + ", " + orNone(u.Enabled, "not enabled") + ")",
		Actions: []provision.Action{{Script: script}},
		After:   func(f *provision.Facts) { f.Units[UnitName] = provision.Unit{Active: "inactive"} },
	}
}

func planRemoveUnit(f *provision.Facts) provision.Plan {
	if _, ok := f.Files[UnitPath]; !ok {
		return provision.Plan{Message: UnitPath + " is gone"}
	}
	return provision.Plan{
		Reason:  "removing " + UnitPath,
		Actions: []provision.Action{{Script: "rm -f " + UnitPath + "\nsystemctl daemon-reload"}},
		After:   func(f *provision.Facts) { delete(f.Files, UnitPath) },
	}
}

// planRemovePath removes a file, or a directory with all it holds.
func planRemovePath(path string, dir bool) func(f *provision.Facts) provision.Plan {
	return func(f *provision.Facts) provision.Plan {
		exists := f.Dirs[path]
		if !dir {
			_, exists = f.Files[path]
		}
		if !exists {
			return provision.Plan{Message: path + " is gone"}
		}
		return provision.Plan{
			Reason:  "removing " + path,
			Actions: []provision.Action{{Script: "rm -rf " + path}},
			After: func(f *provision.Facts) {
				delete(f.Dirs, path)
				delete(f.Files, path)
			},
		}
	}
}
