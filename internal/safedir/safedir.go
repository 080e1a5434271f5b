// Package safedir does root's file work inside directories that a less trusted user can
// write: an instance's data directory belongs to the instance's OS user, which a tenant who
// became PostgreSQL's superuser controls. Every name is resolved relative to an open
// directory descriptor one component at a time, and no symbolic link is followed, neither in
// the middle of a path nor at its end (openat with O_NOFOLLOW, as the kernel's own
// RESOLVE_NO_SYMLINKS does); files are created with O_EXCL and replaced by renameat, which
// moves a link rather than following it; ownership changes go through the open descriptor
// (fchown); reads and writes are refused unless the descriptor is a regular file, and are
// opened with O_NONBLOCK so that a FIFO planted in a file's place cannot hang root.
//
//	d, err := safedir.Open(instanceDir)
//	...
//	defer d.Close()
//	err = d.WriteFile("pgdata/pg_hba.conf", hba, 0o600, safedir.Owner{UID: uid, GID: gid})
//
// The path given to Open is trusted up to its last component, which must be a directory and
// not a link: it is the caller's to keep that path's parents out of anyone else's reach.
package safedir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

var (
	// ErrLink means a path led through or to a symbolic link.
	ErrLink = errors.New("safedir: a symbolic link where a file or directory was expected")
	// ErrNotRegular means a name that should be a regular file is something else (a FIFO, a
	// socket, a device, a directory).
	ErrNotRegular = errors.New("safedir: not a regular file")
	// ErrBadName means a relative path that is empty, absolute or climbs out ("..").
	ErrBadName = errors.New("safedir: a path must be relative and stay beneath its directory")
)

// Owner is the user and group a file or directory is given; Keep leaves them as they are.
type Owner struct{ UID, GID int }

// Keep is the Owner that changes nothing (the creator, root, keeps the file).
var Keep = Owner{UID: -1, GID: -1}

// Dir is an open directory.
type Dir struct {
	fd   int
	path string
}

// Open opens the directory at p, refusing a link in its last component.
func Open(p string) (*Dir, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	return &Dir{fd: fd, path: p}, nil
}

// Close closes the directory.
func (d *Dir) Close() error { return unix.Close(d.fd) }

// Path is the directory's path, for messages.
func (d *Dir) Path() string { return d.path }

func pathErr(op, p string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		err = ErrLink
	case errors.Is(err, unix.ENOTDIR):
		// O_NOFOLLOW|O_DIRECTORY on a link reports ENOTDIR on some kernels.
		var st unix.Stat_t
		if unix.Lstat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = ErrLink
		}
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// split checks rel and returns its directory components and its last name.
func split(rel string) ([]string, string, error) {
	if rel == "" || strings.HasPrefix(rel, "/") {
		return nil, "", ErrBadName
	}
	parts := strings.Split(path.Clean(rel), "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return nil, "", ErrBadName
		}
	}
	return parts[:len(parts)-1], parts[len(parts)-1], nil
}

// walk opens the directory that holds rel's last name and returns its descriptor (which the
// caller closes when it is not d's own) and that name.
func (d *Dir) walk(rel string) (int, string, func(), error) {
	dirs, name, err := split(rel)
	if err != nil {
		return -1, "", nil, err
	}
	fd := d.fd
	cur := d.path
	for _, c := range dirs {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		cur = path.Join(cur, c)
		if fd != d.fd {
			unix.Close(fd)
		}
		if err != nil {
			return -1, "", nil, linkErr("open", cur, fd, c, err)
		}
		fd = next
	}
	done := func() {
		if fd != d.fd {
			unix.Close(fd)
		}
	}
	return fd, name, done, nil
}

// linkErr names a link as ErrLink: O_NOFOLLOW reports ELOOP for a link at the end of a path,
// and O_DIRECTORY|O_NOFOLLOW may report ENOTDIR for one.
func linkErr(op, p string, dirfd int, name string, err error) error {
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = ErrLink
		}
	}
	return &os.PathError{Op: op, Path: p, Err: err}
}

// OpenDir opens the directory rel beneath d.
func (d *Dir) OpenDir(rel string) (*Dir, error) {
	fd, name, done, err := d.walk(rel)
	if err != nil {
		return nil, err
	}
	defer done()
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, linkErr("open", path.Join(d.path, rel), fd, name, err)
	}
	return &Dir{fd: sub, path: path.Join(d.path, rel)}, nil
}

// openRegular opens rel beneath d with flags (plus O_NOFOLLOW, O_NONBLOCK and O_CLOEXEC) and
// returns it only if it is a regular file.
func (d *Dir) openRegular(rel string, flags int, perm os.FileMode) (*os.File, error) {
	fd, name, done, err := d.walk(rel)
	if err != nil {
		return nil, err
	}
	defer done()
	p := path.Join(d.path, rel)
	f, err := unix.Openat(fd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, uint32(perm.Perm()))
	if errors.Is(err, unix.ENXIO) {
		// A FIFO without a reader, opened for writing without blocking.
		return nil, &os.PathError{Op: "open", Path: p, Err: ErrNotRegular}
	}
	if err != nil {
		return nil, linkErr("open", p, fd, name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(f, &st); err != nil {
		unix.Close(f)
		return nil, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(f)
		return nil, &os.PathError{Op: "open", Path: p, Err: ErrNotRegular}
	}
	// Back to blocking I/O: a regular file does not block anyway, and os.File's poller
	// should not own it.
	if err := unix.SetNonblock(f, false); err != nil {
		unix.Close(f)
		return nil, err
	}
	return os.NewFile(uintptr(f), p), nil
}

// OpenFile opens the regular file rel beneath d for reading.
func (d *Dir) OpenFile(rel string) (*os.File, error) {
	return d.openRegular(rel, unix.O_RDONLY, 0)
}

// ReadFile reads the regular file rel beneath d, at most max bytes of it (max <= 0: all).
func (d *Dir) ReadFile(rel string, max int64) ([]byte, error) {
	f, err := d.OpenFile(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if max > 0 {
		r = io.LimitReader(f, max)
	}
	return io.ReadAll(r)
}

// Tail reads the last n bytes of the regular file rel beneath d.
func (d *Dir) Tail(rel string, n int64) ([]byte, error) {
	f, err := d.OpenFile(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if off := st.Size() - n; off > 0 {
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, n))
}

// WriteFile replaces rel beneath d with a new regular file holding data, with mode perm and
// owner o: it is written to a new temporary name (O_EXCL, after removing whatever had that
// name) and renamed over rel, so a link or FIFO at rel is replaced, never followed.
func (d *Dir) WriteFile(rel string, data []byte, perm os.FileMode, o Owner) error {
	return d.writeFile(rel, data, perm, o, false)
}

// WriteFileSync is WriteFile that also makes the file and its directory entry durable
// (fsync of the file before the rename and of the directory after it).
func (d *Dir) WriteFileSync(rel string, data []byte, perm os.FileMode, o Owner) error {
	return d.writeFile(rel, data, perm, o, true)
}

func (d *Dir) writeFile(rel string, data []byte, perm os.FileMode, o Owner, sync bool) error {
	fd, name, done, err := d.walk(rel)
	if err != nil {
		return err
	}
	defer done()
	p := path.Join(d.path, rel)
	tmp := "." + name + ".fog-tmp"
	if err := unix.Unlinkat(fd, tmp, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: p + " (temporary)", Err: err}
	}
	f, err := unix.Openat(fd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return &os.PathError{Op: "create", Path: p, Err: err}
	}
	file := os.NewFile(uintptr(f), p)
	err = func() error {
		if _, err := file.Write(data); err != nil {
			return err
		}
		if err := unix.Fchmod(f, uint32(perm.Perm())); err != nil {
			return err
		}
		if o.UID >= 0 {
			if err := unix.Fchown(f, o.UID, o.GID); err != nil {
				return err
			}
		}
		if sync {
			return file.Sync()
		}
		return nil
	}()
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(fd, tmp, fd, name)
	}
	if err != nil {
		_ = unix.Unlinkat(fd, tmp, 0)
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	if sync {
		if err := unix.Fsync(fd); err != nil {
			return &os.PathError{Op: "sync", Path: path.Dir(p), Err: err}
		}
	}
	return nil
}

// Append appends data to the regular file rel beneath d.
func (d *Dir) Append(rel string, data []byte) error {
	f, err := d.openRegular(rel, unix.O_WRONLY|unix.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Touch creates the regular file rel beneath d if it is missing, with mode perm, and gives
// it (new or not) to owner o: for a file a less trusted program then writes (a server log).
func (d *Dir) Touch(rel string, perm os.FileMode, o Owner) error {
	f, err := d.openRegular(rel, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, perm)
	if err != nil {
		return err
	}
	defer f.Close()
	if o.UID >= 0 {
		if err := unix.Fchown(int(f.Fd()), o.UID, o.GID); err != nil {
			return &os.PathError{Op: "chown", Path: f.Name(), Err: err}
		}
	}
	return nil
}

// Remove removes the name rel beneath d (a link itself, never its target); a missing name
// is no error.
func (d *Dir) Remove(rel string) error {
	fd, name, done, err := d.walk(rel)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer done()
	if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: path.Join(d.path, rel), Err: err}
	}
	return nil
}

// Rename gives the name old directly in d the new name new, also directly in d (a link is
// renamed itself, never followed); new must not exist.
func (d *Dir) Rename(old, new string) error {
	for _, n := range []string{old, new} {
		if n == "" || n == "." || n == ".." || strings.Contains(n, "/") {
			return &os.PathError{Op: "rename", Path: path.Join(d.path, n), Err: ErrBadName}
		}
	}
	if err := unix.Renameat2(d.fd, old, d.fd, new, unix.RENAME_NOREPLACE); err != nil {
		return &os.PathError{Op: "rename", Path: path.Join(d.path, old), Err: err}
	}
	return nil
}

// Lstat describes the name rel beneath d without following it; ok is false when it is
// missing.
func (d *Dir) Lstat(rel string) (st unix.Stat_t, ok bool, err error) {
	fd, name, done, err := d.walk(rel)
	if errors.Is(err, unix.ENOENT) {
		return st, false, nil
	}
	if err != nil {
		return st, false, err
	}
	defer done()
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, false, nil
		}
		return st, false, &os.PathError{Op: "lstat", Path: path.Join(d.path, rel), Err: err}
	}
	return st, true, nil
}

// IsRegular reports whether rel beneath d is a regular file (not a link to one).
func (d *Dir) IsRegular(rel string) bool {
	st, ok, err := d.Lstat(rel)
	return err == nil && ok && st.Mode&unix.S_IFMT == unix.S_IFREG
}

// Mkdir makes the directory rel beneath d if it is missing and gives it mode perm and owner
// o through its descriptor; an existing link or file there is an error.
func (d *Dir) Mkdir(rel string, perm os.FileMode, o Owner) error {
	fd, name, done, err := d.walk(rel)
	if err != nil {
		return err
	}
	defer done()
	if err := unix.Mkdirat(fd, name, uint32(perm.Perm())); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mkdir", Path: path.Join(d.path, rel), Err: err}
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return linkErr("open", path.Join(d.path, rel), fd, name, err)
	}
	s := &Dir{fd: sub, path: path.Join(d.path, rel)}
	defer s.Close()
	return s.Set(perm, o)
}

// Set gives d itself mode perm and owner o, through its descriptor.
func (d *Dir) Set(perm os.FileMode, o Owner) error {
	if o.UID >= 0 {
		if err := unix.Fchown(d.fd, o.UID, o.GID); err != nil {
			return &os.PathError{Op: "chown", Path: d.path, Err: err}
		}
	}
	if err := unix.Fchmod(d.fd, uint32(perm.Perm())); err != nil {
		return &os.PathError{Op: "chmod", Path: d.path, Err: err}
	}
	return nil
}

// Stat describes d itself.
func (d *Dir) Stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstat(d.fd, &st)
	return st, err
}

// Names lists the names in d.
func (d *Dir) Names() ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.path, Err: err}
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// ChownTree gives d and everything beneath it to o, links themselves included (never their
// targets), descending only through directories it opened without following a link.
func (d *Dir) ChownTree(o Owner) error {
	if err := unix.Fchown(d.fd, o.UID, o.GID); err != nil {
		return &os.PathError{Op: "chown", Path: d.path, Err: err}
	}
	names, err := d.Names()
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return &os.PathError{Op: "lstat", Path: path.Join(d.path, n), Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := d.OpenDir(n)
			if err != nil {
				return err
			}
			err = sub.ChownTree(o)
			sub.Close()
			if err != nil {
				return err
			}
			continue
		}
		if err := unix.Fchownat(d.fd, n, o.UID, o.GID, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.ENOENT) {
			return &os.PathError{Op: "chown", Path: path.Join(d.path, n), Err: err}
		}
	}
	return nil
}

// CopyFile copies the regular file rel beneath d to name in dst, as a new file of mode perm
// owned by the caller.
func (d *Dir) CopyFile(rel string, dst *Dir, name string, perm os.FileMode) error {
	src, err := d.OpenFile(rel)
	if err != nil {
		return err
	}
	defer src.Close()
	if strings.Contains(name, "/") {
		return ErrBadName
	}
	if err := unix.Unlinkat(dst.fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "remove", Path: path.Join(dst.path, name), Err: err}
	}
	fd, err := unix.Openat(dst.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return &os.PathError{Op: "create", Path: path.Join(dst.path, name), Err: err}
	}
	out := os.NewFile(uintptr(fd), path.Join(dst.path, name))
	_, err = io.Copy(out, src)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", path.Join(d.path, rel), err)
	}
	return nil
}
