package boss

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/bettertest/bettertest"
	"github.com/bettertest/bettertest/internal/mask"
)

// PipedefConfig is a pipeline from a pipedef file: --pipedef FILE[,secrets=A+B].
type PipedefConfig struct {
	Path    string
	Secrets []string // the names of the secrets its pipedef is given
}

// secretName is what a secret may be called: it names a file in the
// pipedef's secrets directory.
var secretName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// SecretsSeparator separates the secrets a pipeline declares (secrets=A+B):
// it is neither in a secret's name nor in the comma-separated settings of
// --pipedef and --repo.
const SecretsSeparator = "+"

// ParseSecret parses a --secret NAME=FILE value and reads the file, which
// must have mode 0600 like every secret file.
func ParseSecret(s string) (string, []byte, error) {
	name, file, ok := strings.Cut(s, "=")
	if !ok || file == "" {
		return "", nil, fmt.Errorf("--secret %q is not NAME=FILE: pass the secret's name and a file (mode 0600) holding it, e.g. --secret deploy_key=/etc/bettertest/deploy_key", shortArg(s))
	}
	if !secretName.MatchString(name) {
		return "", nil, fmt.Errorf("--secret %s: %q cannot be a secret's name: use letters, digits, '_', '.' and '-'", shortArg(s), shortArg(name))
	}
	value, err := bettertest.ReadTokenFile(file)
	if err != nil {
		return "", nil, fmt.Errorf("--secret %s: %w", name, err)
	}
	return name, value, nil
}

// ParsePipedef parses a --pipedef value: a path, and the secrets its
// pipeline is given, if any (FILE,secrets=A+B).
func ParsePipedef(s string) (PipedefConfig, error) {
	i := strings.LastIndex(s, ",secrets=")
	if i < 0 {
		return PipedefConfig{Path: s}, nil
	}
	names, err := parseSecretNames("--pipedef "+s[:i], s[i+len(",secrets="):])
	return PipedefConfig{Path: s[:i], Secrets: names}, err
}

// parseSecretNames parses the value of a secrets= setting.
func parseSecretNames(flag, v string) ([]string, error) {
	names := strings.Split(v, SecretsSeparator)
	for _, n := range names {
		if !secretName.MatchString(n) {
			return nil, fmt.Errorf("%s: secrets=%s: %q is not a secret's name: list the names of --secret flags, separated by %q, e.g. secrets=deploy_key%sregistry", flag, shortArg(v), shortArg(n), SecretsSeparator, SecretsSeparator)
		}
	}
	return names, nil
}

// checkSecrets makes sure every secret a pipeline asks for is given.
func checkSecrets(pipeline, flag string, names []string, secrets map[string][]byte) error {
	for _, n := range names {
		if _, ok := secrets[n]; !ok {
			have := slices.Sorted(maps.Keys(secrets))
			list := "none"
			if len(have) > 0 {
				list = strings.Join(have, ", ")
			}
			return fmt.Errorf("%s: pipeline %s asks for the secret %q, which no --secret gives (given: %s): pass --secret %s=FILE", flag, pipeline, n, list, n)
		}
	}
	return nil
}

// masker masks the values of every secret a pipeline is given, in all that
// the boss records and publishes of its runs.
func (b *Boss) masker(pipeline string) *mask.Masker {
	var values [][]byte
	for _, n := range b.secretNames[pipeline] {
		values = append(values, b.cfg.Secrets[n])
	}
	return mask.New(values)
}

// writeSecretsDir writes the secrets of a pipeline into a new directory
// under runDir (mode 0700), one file each, named after it (mode 0400), for
// its pipedef's --secrets-dir. It returns "" when the pipeline has none.
func (b *Boss) writeSecretsDir(runDir, pipeline string) (dir string, err error) {
	names := b.secretNames[pipeline]
	if len(names) == 0 {
		return "", nil
	}
	dir, err = os.MkdirTemp(runDir, "secrets-")
	if err != nil {
		return "", fmt.Errorf("secrets of %s: %w", pipeline, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
			dir = ""
		}
	}()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), b.cfg.Secrets[n], 0o400); err != nil {
			return "", fmt.Errorf("secrets of %s: %w", pipeline, err)
		}
	}
	return dir, nil
}

// runSecretsDir is writeSecretsDir for a run, whose pipedef gets
// --secrets-dir DIR unless DIR is "": a pull request from a fork runs code
// its author controls, so it gets no secrets. The directory is removed when
// the run ends (engine.finish).
func (b *Boss) runSecretsDir(r *activeRun, runDir string) (string, error) {
	if r.commit != nil && r.commit.Fork {
		return "", nil
	}
	dir, err := b.writeSecretsDir(runDir, r.run.Pipeline)
	b.do(func(*engine) { r.secretsDir = dir })
	return dir, err
}

// removeSecrets removes a run's secrets directory: its pipedef has exited.
func (e *engine) removeSecrets(r *activeRun) {
	if r.secretsDir == "" {
		return
	}
	if err := os.RemoveAll(r.secretsDir); err != nil {
		e.log.Error("remove a run's secrets", "run", r.run.ID, "dir", r.secretsDir, "err", err)
	}
	r.secretsDir = ""
}

// maskOutput masks a chunk of a run's output in its (task, stream) masker,
// which holds back what may be the start of a secret.
func (r *activeRun) maskOutput(task string, c bettertest.Chunk) bettertest.Chunk {
	if r.mask.Empty() {
		return c
	}
	key := [2]string{task, c.Stream}
	s := r.masks[key]
	if s == nil {
		s = r.mask.Stream()
		r.masks[key] = s
	}
	c.Text = string(s.Write([]byte(c.Text)))
	return c
}

// flushMasks releases the output held back for a task's streams, or
// for every task's when the run has ended (all).
func (e *engine) flushMasks(r *activeRun, task string, all bool) {
	keys := slices.SortedFunc(maps.Keys(r.masks), func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	for _, key := range keys {
		if !all && key[0] != task {
			continue
		}
		s := r.masks[key]
		delete(r.masks, key)
		if text := s.Flush(); len(text) > 0 {
			e.recordOutput(r, key[0], bettertest.Chunk{Stream: key[1], Text: string(text)})
		}
	}
}

// shortArg keeps a flag's value readable in an error message.
func shortArg(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}
