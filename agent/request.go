package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/distribution/reference"

	"github.com/bettertest/bettertest"
)

// MaxRequestBytes bounds a /run body: a command and its environment, never data.
const MaxRequestBytes = 1 << 20

// MaxTimeoutS is the longest timeout a run may ask for: one week.
const MaxTimeoutS = 7 * 24 * 3600

// DecodeRunRequest reads and validates one RunRequest. Every error message says
// what to change; none of them echoes more than a short piece of the input.
func DecodeRunRequest(r io.Reader) (bettertest.RunRequest, error) {
	var req bettertest.RunRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return req, fmt.Errorf("request body is larger than %d bytes: send the command, not data: %w", tooBig.Limit, err)
		}
		return req, fmt.Errorf("request body is not a valid run request: %s", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("request body has data after the JSON object: send exactly one object")
	}
	return req, ValidateRunRequest(req)
}

func jsonProblem(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return `the body is empty; send a JSON object such as {"image": "debian:12", "command": "echo hi"}`
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ) && typ.Field == "":
		return fmt.Sprintf("the body must be a JSON object, not %s", typ.Value)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q must be %s, not %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return strings.TrimPrefix(err.Error(), "json: ") + `; the fields are image, command, env, workdir, timeout_s, inputs, outputs, results, cache, name, secrets, limits, user, reach_host, services, caches`
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON object is cut short"
	}
	return err.Error()
}

// ValidateRunRequest checks the fields of a decoded request.
func ValidateRunRequest(req bettertest.RunRequest) error {
	if req.Image == "" {
		return errors.New(`"image" is required: name a Docker image present on the worker, e.g. "debian:12"`)
	}
	if _, err := reference.ParseNormalizedNamed(req.Image); err != nil {
		return fmt.Errorf(`"image" %q is not a valid image reference (%v): use NAME[:TAG] or NAME@sha256:DIGEST`, short(req.Image), err)
	}
	if strings.TrimSpace(req.Command) == "" {
		return errors.New(`"command" is required: a shell command, run as sh -c COMMAND`)
	}
	if strings.IndexByte(req.Command, 0) >= 0 {
		return errors.New(`"command" contains a NUL byte, which no shell can run: remove it`)
	}
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf(`"env" key %q is not a variable name: it must be non-empty and contain no "=" or NUL`, short(k))
		}
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf(`"env" value of %s contains a NUL byte: remove it`, short(k))
		}
	}
	if req.Workdir != "" && (!path.IsAbs(req.Workdir) || strings.IndexByte(req.Workdir, 0) >= 0) {
		return fmt.Errorf(`"workdir" %q must be an absolute path inside the container, e.g. "/src"`, short(req.Workdir))
	}
	if req.TimeoutS < 0 || req.TimeoutS > MaxTimeoutS {
		return fmt.Errorf(`"timeout_s" %d is out of range: use 0 (no timeout) up to %d seconds`, req.TimeoutS, MaxTimeoutS)
	}
	for p, id := range req.Inputs {
		if err := checkContainerPath("inputs", p); err != nil {
			return err
		}
		if _, ok := parseID(id); !ok {
			return fmt.Errorf(`"inputs" %s: %q is not an artifact id: use "sha256:" and 64 lowercase hex digits`, short(p), short(id))
		}
	}
	if err := checkPathList("outputs", req.Outputs); err != nil {
		return err
	}
	if err := checkPathList("results", req.Results); err != nil {
		return err
	}
	if len(req.Results) > 0 && req.Cache {
		return errors.New(`"results" are for tests, which always run: a build ("cache": true) cannot have them`)
	}
	if len(req.Inputs) > MaxPaths || len(req.Outputs) > MaxPaths || len(req.Results) > MaxPaths {
		return fmt.Errorf(`"inputs", "outputs" and "results" may name at most %d paths each: pack files into fewer directories`, MaxPaths)
	}
	if len(req.Name) > 256 || strings.ContainsFunc(req.Name, unicode.IsControl) {
		return fmt.Errorf(`"name" %q must be at most 256 characters, without control characters`, short(req.Name))
	}
	if req.Name != "" && !req.Cache {
		return errors.New(`"name" names a build: send it with "cache": true, or leave it out`)
	}
	if l := req.Limits; l != nil && (l.PIDs < 0 || l.MemoryBytes < 0 || l.CPUs < 0 || l.CPUs != l.CPUs) {
		return errors.New(`"limits" must be positive numbers ("pids", "memory_bytes", "cpus"), or left out`)
	}
	if err := checkServices(req); err != nil {
		return err
	}
	if err := checkCaches(req); err != nil {
		return err
	}
	if !validUser(req.User) {
		return fmt.Errorf(`"user" %q is not a user: give NAME or UID[:GID] as the image knows it, e.g. "65534" or "build"`, short(req.User))
	}
	return checkSecrets(req)
}

// validUser says whether user is empty, NAME, UID or NAME/UID:GROUP/GID.
func validUser(user string) bool {
	if len(user) > 64 {
		return false
	}
	for _, part := range strings.SplitN(user, ":", 2) {
		if user != "" && part == "" {
			return false
		}
		for _, r := range part {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
				return false
			}
		}
	}
	return true
}

// Limits of a run's secrets: a few keys and passwords, not files of data.
const (
	MaxSecrets     = 32
	MaxSecretBytes = 64 << 10
)

// checkSecrets checks where each secret goes. No message ever quotes a value.
func checkSecrets(req bettertest.RunRequest) error {
	if len(req.Secrets) > MaxSecrets {
		return fmt.Errorf(`"secrets" has %d entries: a run may have at most %d`, len(req.Secrets), MaxSecrets)
	}
	mounts := slices.Concat(slices.Collect(maps.Keys(req.Inputs)), req.Outputs, req.Results)
	seen := map[string]bool{}
	for i, s := range req.Secrets {
		where := fmt.Sprintf(`"secrets"[%d]`, i)
		switch {
		case (s.Path == "") == (s.Env == ""):
			return fmt.Errorf(`%s needs exactly one of "path" (a file in the container) and "env" (an environment variable)`, where)
		case s.Value == "":
			return fmt.Errorf(`%s (%s) has an empty "value": an empty secret cannot be masked; leave it out`, where, short(s.Target()))
		case len(s.Value) > MaxSecretBytes:
			return fmt.Errorf(`%s (%s) has a value of %d bytes: at most %d; pass a key or a password, not data (data goes in "inputs")`, where, short(s.Target()), len(s.Value), MaxSecretBytes)
		case seen[s.Target()]:
			return fmt.Errorf(`%s: %s is given twice: give each file or variable one secret`, where, short(s.Target()))
		}
		seen[s.Target()] = true
		if s.Env != "" {
			if !validEnvName(s.Env) {
				return fmt.Errorf(`%s: "env" %q is not a variable name: use letters, digits and _, not starting with a digit`, where, short(s.Env))
			}
			if _, ok := req.Env[s.Env]; ok {
				return fmt.Errorf(`%s: the variable %s is also in "env": set it in one place`, where, s.Env)
			}
			if strings.IndexByte(s.Value, 0) >= 0 {
				return fmt.Errorf(`%s: the value of the variable %s contains a NUL byte, which no environment can hold: pass it as a file ("path")`, where, s.Env)
			}
			continue
		}
		if err := checkContainerPath("secrets", s.Path); err != nil {
			return err
		}
		for _, m := range mounts {
			if within(s.Path, m) || within(m, s.Path) {
				return fmt.Errorf(`%s: the secret file %s overlaps the input, output or results path %s: put it elsewhere, e.g. under /run/secrets`, where, short(s.Path), short(m))
			}
		}
	}
	return nil
}

// within says whether path p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func validEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// MaxPaths bounds the inputs and the outputs of one run.
const MaxPaths = 256

// checkPathList checks a list of container paths, each named once.
func checkPathList(field string, paths []string) error {
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		if err := checkContainerPath(field, p); err != nil {
			return err
		}
		if seen[p] {
			return fmt.Errorf(`"%s" names %s twice: name each path once`, field, short(p))
		}
		seen[p] = true
	}
	return nil
}

// checkContainerPath checks a path in the container that an input is mounted
// at or an output is collected from.
func checkContainerPath(field, p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p || p == "/" || strings.IndexByte(p, 0) >= 0 || len(p) > 4096 {
		return fmt.Errorf(`"%s" path %q must be a clean absolute path in the container other than "/", e.g. "/src"`, field, short(p))
	}
	return nil
}

// short keeps error messages readable when the input is huge.
func short(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// MaxServices bounds the services of one run.
const MaxServices = 8

// serviceName is a service's name: a host name its run reaches it by.
var serviceName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

func checkServices(req bettertest.RunRequest) error {
	if len(req.Services) == 0 {
		return nil
	}
	if req.Cache {
		return errors.New(`"services" are for tests: a build ("cache": true) is cached by its inputs, which a service is not part of`)
	}
	if len(req.Services) > MaxServices {
		return fmt.Errorf(`"services" has %d entries: a run may have at most %d`, len(req.Services), MaxServices)
	}
	for name, svc := range req.Services {
		where := fmt.Sprintf(`"services" %q`, short(name))
		if !serviceName.MatchString(name) {
			return fmt.Errorf(`%s: a service's name is the host name its run reaches it by: lowercase letters, digits and -, starting with a letter, at most 31 characters, e.g. "db"`, where)
		}
		if svc.Image == "" {
			return fmt.Errorf(`%s needs an "image"`, where)
		}
		if _, err := reference.ParseNormalizedNamed(svc.Image); err != nil {
			return fmt.Errorf(`%s: "image" %q is not a valid image reference (%v): use NAME[:TAG] or NAME@sha256:DIGEST`, where, short(svc.Image), err)
		}
		if strings.IndexByte(svc.Command, 0) >= 0 || strings.IndexByte(svc.Ready.Command, 0) >= 0 {
			return fmt.Errorf(`%s: a command contains a NUL byte: remove it`, where)
		}
		if (strings.TrimSpace(svc.Ready.Command) == "") == (svc.Ready.Port == 0) {
			return fmt.Errorf(`%s needs exactly one of "ready": {"command": "..."} (exits 0 once it is ready, e.g. "pg_isready") and {"port": N} (ready once it listens on N)`, where)
		}
		if svc.Ready.Port < 0 || svc.Ready.Port > 65535 {
			return fmt.Errorf(`%s: "ready" port %d is not a TCP port: use 1 to 65535`, where, svc.Ready.Port)
		}
		for k, v := range svc.Env {
			if !validEnvName(k) || strings.IndexByte(v, 0) >= 0 {
				return fmt.Errorf(`%s: "env" %q is not a variable name with a value without NUL bytes`, where, short(k))
			}
		}
	}
	return nil
}
