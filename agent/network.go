package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/coreos/go-iptables/iptables"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"
	"github.com/docker/docker/errdefs"
)

// Runs reach the outside world (package downloads work) but neither the
// worker's host nor each other. Every run's container is on one bridge
// network of the worker's own, "bettertest-OWNER" on the bridge interface
// "btw-OWNER":
//   - Docker's inter-container communication is off on it
//     (com.docker.network.bridge.enable_icc=false): a run cannot reach
//     another run's container, and Docker's own isolation rules keep it from
//     containers on other networks;
//   - one firewall rule drops whatever comes from that interface to the host
//     itself (INPUT -i btw-OWNER -j DROP): the worker's API, sshd, any
//     service on any of the host's addresses. Forwarded traffic, to the
//     world, is untouched.
// It costs nothing per run: the network and the rule are made when the
// worker starts and removed when it stops.

// LabelDataDir on a run network is its worker's data dir (an absolute path):
// a network whose data dir is gone belongs to no worker that can come back,
// and scripts/setup-test-env.sh removes those that tests left.
const LabelDataDir = "dev.bettertest.data-dir"

// RunNetworkName is the Docker network of the worker with this identity
// (WorkerIdentity): one per data dir, so a restarted worker finds its own.
func RunNetworkName(owner string) string { return "bettertest-" + owner[:12] }

// RunBridgeName is its bridge interface (at most 15 characters).
func RunBridgeName(owner string) string { return "btw-" + owner[:11] }

// runNetwork makes the worker's run network and its firewall rule, and
// returns the network's name.
func runNetwork(ctx context.Context, docker *client.Client, owner, dataDir string) (string, error) {
	name, bridge := RunNetworkName(owner), RunBridgeName(owner)
	_, err := docker.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelWorker: owner, LabelDataDir: dataDir},
		Options: map[string]string{
			"com.docker.network.bridge.name":       bridge,
			"com.docker.network.bridge.enable_icc": "false",
		},
	})
	if err != nil && !errdefs.IsConflict(err) {
		return "", fmt.Errorf("make the runs' network %s: %w", name, err)
	}
	if err := dropInput(bridge); err != nil {
		return "", fmt.Errorf("the runs' firewall rule: %w", err)
	}
	return name, nil
}

// dropInput adds the rule that keeps whatever comes from a bridge from the
// host itself, once.
func dropInput(bridge string) error {
	ipt, err := iptables.New()
	if err != nil {
		return fmt.Errorf("%w: install iptables, which Docker uses too", err)
	}
	rule := []string{"-i", bridge, "-j", "DROP"}
	exists, err := ipt.Exists("filter", "INPUT", rule...)
	if err == nil && !exists {
		err = ipt.Insert("filter", "INPUT", 1, rule...)
	}
	if err != nil {
		return fmt.Errorf("iptables -I INPUT -i %s -j DROP: %w", bridge, err)
	}
	return nil
}

// RemoveDropInput removes dropInput's rule.
func RemoveDropInput(bridge string) error {
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	return ipt.DeleteIfExists("filter", "INPUT", "-i", bridge, "-j", "DROP")
}

// removeRunNetwork removes the run network and its rule when the worker
// stops: its containers are gone by then.
func removeRunNetwork(docker *client.Client, owner string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerTimeout)
	defer cancel()
	if err := docker.NetworkRemove(ctx, RunNetworkName(owner)); err != nil && !errdefs.IsNotFound(err) {
		log.Warn("remove the runs' network", "err", err)
	}
	if err := RemoveDropInput(RunBridgeName(owner)); err != nil {
		log.Warn("remove the runs' firewall rule", "err", err)
	}
}
