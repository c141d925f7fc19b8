package boss

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/bettertest/bettertest/internal/atomicfile"
)

// Role is what a user may do: a viewer reads, an operator also starts,
// cancels, quarantines and approves.
type Role string

const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
)

// users is the users file (--users-file): JSON, mode 0600, written whole
// and atomically by the `bettertest boss user|token` commands.
type users struct {
	Users []user `json:"users"`
}

type user struct {
	Name     string  `json:"name"`
	Role     Role    `json:"role"`
	Password string  `json:"password"` // a PHC string: $argon2id$v=19$m=...,t=...,p=...$SALT$HASH
	Tokens   []token `json:"tokens,omitempty"`
}

// token is an API token, kept as its SHA-256 only. A token is 32 random
// bytes: nobody can guess it or search for it, so a fast hash is as safe as
// a slow one and keeps every API request cheap. Passwords are chosen by
// people and are slow-hashed (argon2id) instead.
type token struct {
	SHA256    string `json:"sha256"`
	CreatedMS int64  `json:"created_ms"`
}

// The argon2id parameters of new hashes (RFC 9106's second recommendation).
// Each hash keeps its own, so they can change without breaking old ones.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
	argonKeyLen  = 32
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("user name %q is not 1 to 64 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit)", name)
	}
	return nil
}

// hashPassword makes a PHC string with a fresh salt.
func hashPassword(password []byte) string {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey(password, salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64(salt), b64(key))
}

// checkPassword says whether password matches the PHC string, in time that
// does not depend on where they differ.
func checkPassword(phc string, password []byte) bool {
	f := strings.Split(phc, "$") // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(f) != 6 || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false
	}
	var m, t uint32
	var p uint8
	if n, _ := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &p); n != 3 {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(f[4])
	key, err2 := base64.RawStdEncoding.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return false
	}
	got := argon2.IDKey(password, salt, t, m, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// sha256Hex is how tokens and session cookies are kept: never the secret itself.
func sha256Hex(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// randomSecret is 32 random bytes, URL-safe.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// readUsers reads a users file; a missing one has no users yet.
func readUsers(path string) (users, error) {
	var u users
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	if err != nil {
		return u, fmt.Errorf("users file %s: %w", path, err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return u, fmt.Errorf("users file %s is readable by group or others (mode %04o): run chmod 600 %s", path, perm, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return u, fmt.Errorf("users file %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &u); err != nil {
		return u, fmt.Errorf("users file %s is not a users file (%v): manage it with bettertest boss user add|passwd|remove", path, err)
	}
	for _, x := range u.Users {
		if x.Role != RoleViewer && x.Role != RoleOperator {
			return u, fmt.Errorf("users file %s: user %s has role %q: make it viewer or operator", path, x.Name, x.Role)
		}
	}
	return u, nil
}

func (u *users) find(name string) *user {
	for i := range u.Users {
		if u.Users[i].Name == name {
			return &u.Users[i]
		}
	}
	return nil
}

// editUsers reads the users file (none yet is fine), lets edit change it and
// writes it back atomically with mode 0600: a running boss sees the whole
// new file or the old one.
func editUsers(path string, edit func(*users) error) error {
	if path == "" {
		return errors.New("no users file: pass --users-file PATH")
	}
	u, err := readUsers(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := edit(&u); err != nil {
		return err
	}
	data, err := json.MarshalIndent(u, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write users file %s: %w", path, err)
	}
	return nil
}

// AddUser adds a user with a role and a password to the users file,
// creating the file if need be.
func AddUser(path, name string, role Role, password []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	if role != RoleViewer && role != RoleOperator {
		return fmt.Errorf("role %q is not viewer or operator", role)
	}
	if len(password) < 8 {
		return errors.New("the password is shorter than 8 characters: choose a longer one")
	}
	return editUsers(path, func(u *users) error {
		if u.find(name) != nil {
			return fmt.Errorf("user %s already exists in %s: change the password with bettertest boss user passwd %s", name, path, name)
		}
		u.Users = append(u.Users, user{Name: name, Role: role, Password: hashPassword(password)})
		return nil
	})
}

// SetPassword changes a user's password. Their sessions go on: remove the
// user to end those.
func SetPassword(path, name string, password []byte) error {
	if len(password) < 8 {
		return errors.New("the password is shorter than 8 characters: choose a longer one")
	}
	return editUsers(path, func(u *users) error {
		x := u.find(name)
		if x == nil {
			return noUser(path, name)
		}
		x.Password = hashPassword(password)
		return nil
	})
}

// RemoveUser removes a user with their tokens; a running boss refuses their
// sessions from then on.
func RemoveUser(path, name string) error {
	return editUsers(path, func(u *users) error {
		for i, x := range u.Users {
			if x.Name == name {
				u.Users = append(u.Users[:i], u.Users[i+1:]...)
				return nil
			}
		}
		return noUser(path, name)
	})
}

// AddToken makes a new API token for a user and returns it: only its hash
// is kept, so this is the one time it can be seen.
func AddToken(path, name string) (string, error) {
	secret := "btt_" + randomSecret()
	err := editUsers(path, func(u *users) error {
		x := u.find(name)
		if x == nil {
			return noUser(path, name)
		}
		x.Tokens = append(x.Tokens, token{SHA256: sha256Hex(secret), CreatedMS: time.Now().UnixMilli()})
		return nil
	})
	return secret, err
}

func noUser(path, name string) error {
	return fmt.Errorf("no user %s in %s: add one with bettertest boss user add %s --users-file %s", name, path, name, path)
}
