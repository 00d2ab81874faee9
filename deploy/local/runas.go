package local

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// postgresOSUser is the unprivileged account PostgreSQL runs as when we are root. The Debian
// package creates it; on a machine without it we create a system account of the same name, which
// the package later adopts.
const postgresOSUser = "postgres"

// osUser is the account a child process runs as. A nil *osUser means "as ourselves".
type osUser struct {
	name     string
	uid, gid uint32
	home     string
}

// runAs returns the account that PostgreSQL must run as: nil when we are not root (initdb and
// postgres run fine as any other user), else the postgres system user, created if missing.
func runAs(log *slog.Logger) (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(postgresOSUser)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return nil, fmt.Errorf("look up user %s: %w", postgresOSUser, err)
		}
		log.Info("creating system user for PostgreSQL (it refuses to run as root)", "user", postgresOSUser)
		out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/var/lib/postgresql", "--shell", "/usr/sbin/nologin", postgresOSUser).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("postgres refuses to run as root and creating user %s failed: %w: %s", postgresOSUser, err, out)
		}
		if u, err = user.Lookup(postgresOSUser); err != nil {
			return nil, fmt.Errorf("look up user %s after creating it: %w", postgresOSUser, err)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s has non-numeric uid/gid %q/%q", u.Username, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("user %s has uid 0; postgres cannot run as it", u.Username)
	}
	return &osUser{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir}, nil
}

// apply makes cmd run as u. Groups are reset so the child keeps none of root's supplementary groups.
func (u *osUser) apply(cmd *exec.Cmd) {
	if u == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{u.gid}}
	cmd.Env = append(cmd.Environ(), "HOME="+u.home, "USER="+u.name, "LOGNAME="+u.name)
}

// give hands dir (recursively, only if its top is not already u's) to u.
func (u *osUser) give(dir string) error {
	if u == nil {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok && s.Uid == u.uid {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.uid), int(u.gid))
	})
}

// ensureTraversable gives u search (x) permission on every ancestor of dir that it lacks. Go's
// os.MkdirTemp and t.TempDir make 0700 folders, and /root is 0700 too, so a data folder below them
// is unreachable for the postgres user. We add only "others may traverse" (o+x, not read), log
// each change, and never touch dir's own contents.
func (u *osUser) ensureTraversable(dir string, log *slog.Logger) error {
	if u == nil {
		return nil
	}
	var ancestors []string
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		ancestors = append(ancestors, p)
		if p == filepath.Dir(p) {
			break
		}
	}
	for i := len(ancestors) - 1; i >= 0; i-- {
		p := ancestors[i]
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		s, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		mode := st.Mode().Perm()
		var can bool
		switch {
		case s.Uid == u.uid:
			can = mode&0o100 != 0
		case s.Gid == u.gid:
			can = mode&0o010 != 0
		default:
			can = mode&0o001 != 0
		}
		if can {
			continue
		}
		if err := os.Chmod(p, mode|0o001); err != nil {
			return fmt.Errorf("let user %s reach %s: %w", u.name, dir, err)
		}
		log.Warn("granted search permission (o+x) so that the postgres user can reach its data folder",
			"dir", p, "user", u.name)
	}
	return nil
}
