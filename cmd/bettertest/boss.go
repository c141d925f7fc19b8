package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bettertest/bettertest/boss"
)

const bossUsage = `Usage: bettertest boss [--pipedef PATH[,secrets=A+B] ...] [--repo NAME=GIT_URL,pipedef=PATH ...] [--secret NAME=FILE ...] [flags]

Run pipelines on healthy workers, keep their history, and serve the API:
  GET  /api/pipelines               the pipelines and their last runs
  POST /api/pipelines/NAME/runs     start a run
  GET  /api/runs?pipeline=NAME      runs, newest first
  GET  /api/runs/ID                 a run with its stages and tasks
  GET  /api/runs/ID/tasks/TASK/log  a task's output (SSE with Accept: text/event-stream)
  GET  /api/runs/ID/tests           its test results, every attempt
  POST /api/runs/ID/cancel          stop a run
  POST /api/runs/ID/approve         let a pull request from a fork run
  GET  /api/flaky?pipeline=NAME     flaky and quarantined tests, with evidence
  POST /api/quarantine              quarantine a test or release it
  GET  /api/workers                 the workers and their load
  GET  /api/events                  every change, as Server-Sent Events
  POST /hooks/github                GitHub's push and pull_request webhooks

With --users-file, people log in at /login and programs send an API token as
Authorization: Bearer TOKEN. Manage users and tokens with
  bettertest boss user add|passwd|remove NAME --users-file FILE
  bettertest boss token add NAME --users-file FILE

Each --pipedef is one pipeline, named after its file. A pipeline gets the
secrets it names (--pipedef FILE,secrets=A+B, --repo ...,secrets=A+B) from
--secret NAME=FILE; their values are masked in everything the boss shows and
keeps. The workers are those
enrollment saved in --workers-dir, plus any given with --worker NAME=URL and
--worker-token-file NAME=PATH.
`

func runBoss(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "user" || args[0] == "token") {
		return runBossUsers(args, stdout, stderr)
	}
	fs := newFlagSet("boss", bossUsage, stderr)
	home, err := os.UserHomeDir()
	if err != nil {
		return fmt.Errorf("find your home directory: %w", err)
	}
	cfg := boss.Config{}
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:9001", "address of the API and the UI")
	pipedefs := fs.StringArray("pipedef", nil, "a Python pipedef, FILE[,secrets=NAME+NAME]; repeat for more pipelines")
	secrets := fs.StringArray("secret", nil, "a secret pipelines may ask for, NAME=FILE (mode 0600); repeatable")
	repos := fs.StringArray("repo", nil, "a pipeline from a git repository: NAME=GIT_URL,pipedef=PATH_IN_REPO[,branch=PATTERN]...[,secrets=NAME+NAME]; branch= takes GitHub filter patterns (** every branch, the default); repeatable")
	fs.StringVar(&cfg.GitHub.WebhookSecretFile, "github-webhook-secret-file", "", "the GitHub webhook's secret (mode 0600): enables POST /hooks/github")
	fs.StringVar(&cfg.GitHub.TokenFile, "github-token-file", "", "a GitHub token (mode 0600) allowed to set commit statuses")
	fs.StringVar(&cfg.GitHub.API, "github-api", "https://api.github.com", "the GitHub REST API's base URL (GitHub Enterprise: https://HOST/api/v3)")
	fs.StringArrayVar(&cfg.GitHub.TrustedAuthors, "trusted-author", nil, "a GitHub login whose pull requests from forks run without approval; repeatable")
	fs.StringVar(&cfg.GitHub.PublicURL, "public-url", "", "where people reach this boss: its host is one of the names it answers to, and links in commit statuses use it (default: http://LISTEN)")
	fs.StringVar(&cfg.UsersFile, "users-file", "", "who may log in, and their API tokens (bettertest boss user add makes it); without it the boss listens on loopback only")
	fs.BoolVar(&cfg.PublicRead, "public-read", false, "let visitors read without logging in")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve https with this certificate (PEM), with --tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the private key (PEM) of --tls-cert")
	workersDir := fs.String("workers-dir", filepath.Join(home, ".config", "bettertest", "workers"), "where enrollment saved the workers")
	workers := fs.StringArray("worker", nil, "another worker, NAME=URL; repeatable")
	tokens := fs.StringArray("worker-token-file", nil, "the token file of a --worker, NAME=PATH; repeatable")
	fs.StringVar(&cfg.DataDir, "data-dir", filepath.Join(home, ".local", "share", "bettertest", "boss"), "the history (SQLite) and the Python library pipedefs use")
	fs.DurationVar(&cfg.Every, "every", 0, "also run every pipeline this often, e.g. 1h (0: only when asked)")
	fs.StringVar(&cfg.Python, "python", "python3", "the Python interpreter pipedefs run with")
	fs.DurationVar(&cfg.Grace, "cancel-grace", 10*time.Second, "how long a cancelled pipedef gets after SIGTERM before SIGKILL")
	quarantine := fs.StringArray("quarantine", nil, "a test whose failures do not fail runs, PIPELINE/TASK or PIPELINE/TASK/CASE; repeatable")
	fs.IntVar(&cfg.Flaky.Window, "flaky-window", boss.DefaultFlakyRules.Window, "how many of a test's newest runs the flaky rules look at")
	fs.Float64Var(&cfg.Flaky.Threshold, "flaky-threshold", boss.DefaultFlakyRules.Threshold, "the flip rate above which a test is flaky, 0 to 1")
	fs.IntVar(&cfg.Flaky.Clear, "flaky-clear", boss.DefaultFlakyRules.Clear, "how many clean passes in a row clear a flaky test")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q: the boss takes flags only", fs.Arg(0))}
	}
	for _, p := range *pipedefs {
		pc, err := boss.ParsePipedef(p)
		if err != nil {
			return usageError{err}
		}
		cfg.Pipedefs = append(cfg.Pipedefs, pc)
	}
	for _, s := range *secrets {
		name, value, err := boss.ParseSecret(s)
		if err != nil {
			return usageError{err}
		}
		if cfg.Secrets == nil {
			cfg.Secrets = map[string][]byte{}
		}
		if _, dup := cfg.Secrets[name]; dup {
			return usageError{fmt.Errorf("--secret names %s twice: give each secret once", name)}
		}
		cfg.Secrets[name] = value
	}
	for _, r := range *repos {
		rc, err := boss.ParseRepo(r)
		if err != nil {
			return usageError{err}
		}
		cfg.Repos = append(cfg.Repos, rc)
	}
	if len(cfg.Pipedefs) == 0 && len(cfg.Repos) == 0 {
		return usageError{fmt.Errorf("no pipelines: pass --pipedef PATH (a Python pipedef) or --repo NAME=GIT_URL,pipedef=PATH, once per pipeline")}
	}
	if err := cfg.Flaky.Check(); err != nil {
		return usageError{err}
	}
	for _, q := range *quarantine {
		pt, err := boss.ParseQuarantine(q)
		if err != nil {
			return usageError{err}
		}
		cfg.Quarantine = append(cfg.Quarantine, pt)
	}
	if cfg.Every < 0 {
		return usageError{fmt.Errorf("--every %s is negative: pass a duration such as 1h, or 0", cfg.Every)}
	}
	cfg.WorkersDir = *workersDir
	cfg.Workers, err = boss.LoadWorkers(*workersDir)
	if err != nil {
		return err
	}
	given, err := namedValues("--worker", *workers)
	if err != nil {
		return err
	}
	tokenFiles, err := namedValues("--worker-token-file", *tokens)
	if err != nil {
		return err
	}
	for name, url := range given {
		tf, ok := tokenFiles[name]
		if !ok {
			return usageError{fmt.Errorf("--worker %s has no token file: pass --worker-token-file %s=PATH", name, name)}
		}
		cfg.Workers = append(cfg.Workers, boss.WorkerConfig{Name: name, URL: url, TokenFile: tf})
	}
	for name := range tokenFiles {
		if _, ok := given[name]; !ok {
			return usageError{fmt.Errorf("--worker-token-file %s names no --worker: pass --worker %s=URL", name, name)}
		}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	return boss.Run(ctx, cfg)
}

// namedValues parses repeated NAME=VALUE flags.
func namedValues(flag string, values []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range values {
		name, value, ok := strings.Cut(v, "=")
		if !ok || name == "" || value == "" {
			return nil, usageError{fmt.Errorf("%s %q is not NAME=VALUE", flag, v)}
		}
		if _, dup := out[name]; dup {
			return nil, usageError{fmt.Errorf("%s names %s twice", flag, name)}
		}
		out[name] = value
	}
	return out, nil
}
