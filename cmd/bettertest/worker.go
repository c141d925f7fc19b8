package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"

	"github.com/docker/docker/client"
	"github.com/docker/go-units"

	"github.com/bettertest/bettertest/agent"
)

const workerUsage = `Usage: bettertest worker --token-file PATH [flags]

Serve the worker API on this Docker host:
  POST /run      run a command in a container; output streams back as Server-Sent Events
  GET  /health   readiness, version, Docker version, load
  PUT, HEAD, GET /artifacts/SHA256
                 store, look up and fetch artifacts (tar archives named by sha256)

Every request needs the header "Authorization: Bearer TOKEN", TOKEN being the
content of --token-file (mode 0600). Under systemd (Type=notify) the worker
reports READY=1 once it listens and Docker has started a container (this
binary, imported as a one-file image). Logs go to stderr.
`

func runWorker(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("worker", workerUsage, stderr)
	cfg := agent.Config{}
	fs.StringVar(&cfg.Listen, "listen", ":9009", "address to listen on")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "file holding the API token, mode 0600 (required)")
	fs.IntVar(&cfg.MaxParallel, "max-parallel", runtime.NumCPU(), "runs executing at once; more wait their turn")
	fs.StringVar(&cfg.DockerHost, "docker-host", client.DefaultDockerHost, "Docker engine address")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/bettertest/worker", "artifacts and the build cache; one worker per directory")
	cacheSize := fs.String("cache-size", "20GiB", "the most the artifacts may take on disk, e.g. 500MiB; least recently used go first")
	pids := fs.Int64("pids-limit", 4096, "processes and threads one run may have at once (0: no limit)")
	memory := fs.String("memory", "", "memory one run may use, /tmp included, e.g. 4GiB (default: 3/4 of this host's divided by --max-parallel; 0: no limit)")
	cpus := fs.Float64("cpus", 0, "CPUs one run may use, e.g. 1.5 (default: all of them)")
	fs.BoolVar(&cfg.AllowReachHost, "allow-reach-host", false, "let a run ask (reach_host) for Docker's default network, from which it reaches this host's services")
	tmpSize := fs.String("tmp-size", "1GiB", "the size of one run's scratch space, a tmpfs at /tmp (0: none, /tmp is on the container's disk)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg.Limits = agent.DefaultLimits(cfg.MaxParallel)
	if *pids < 0 {
		return usageError{fmt.Errorf("--pids-limit %d is negative: give a number of processes, or 0 for no limit", *pids)}
	}
	cfg.Limits.PIDs = *pids
	if *cpus < 0 {
		return usageError{fmt.Errorf("--cpus %g is negative: give a number of CPUs such as 1.5", *cpus)}
	}
	if *cpus > 0 {
		cfg.Limits.CPUs = *cpus
	}
	for _, f := range []struct {
		flag, value string
		into        *int64
	}{{"--memory", *memory, &cfg.Limits.Memory}, {"--tmp-size", *tmpSize, &cfg.Limits.TmpSize}} {
		if f.value == "" {
			continue
		}
		n, err := units.RAMInBytes(f.value)
		if err != nil || n < 0 {
			return usageError{fmt.Errorf("%s %q is not a size: use a number of bytes with a unit, e.g. 2GiB, or 0 for no limit", f.flag, f.value)}
		}
		*f.into = n
	}
	size, err := units.RAMInBytes(*cacheSize)
	if err != nil || size < 1 {
		return usageError{fmt.Errorf("--cache-size %q is not a size: use a number of bytes with a unit, e.g. 500MiB or 20GiB", *cacheSize)}
	}
	cfg.CacheSize = size
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: the worker takes flags only", fs.Arg(0))}
	}
	if cfg.TokenFile == "" {
		return usageError{fmt.Errorf("--token-file is required: a file with mode 0600 holding the API token")}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	return agent.Run(ctx, cfg)
}
