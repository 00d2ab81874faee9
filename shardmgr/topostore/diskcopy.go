package topostore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/8thdegree/meridian/shardmgr/topology"
)

// ErrBadDiskCopy is wrapped by ReadDiskCopy when the file exists but does not hold a valid topology
// (the error also wraps topology.ErrInvalid and names the file).
var ErrBadDiskCopy = errors.New("topostore: disk copy rejected")

// ReadDiskCopy reads and validates the disk copy at path. A missing file is an error wrapping
// fs.ErrNotExist; a corrupt or invalid one wraps ErrBadDiskCopy and topology.ErrInvalid.
func ReadDiskCopy(path string) (*topology.Topology, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("topostore: read disk copy: %w", err)
	}
	t, err := topology.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s (%d bytes): %w", ErrBadDiskCopy, path, len(data), err)
	}
	return t, nil
}

// WriteDiskCopy writes t to path atomically: a reader (or a node restarting after a crash) sees either
// the previous copy or the new one, never a torn file. The data goes to a temporary file in the same
// directory, is fsynced, renamed over path, and the directory is fsynced so the rename itself survives
// a power loss.
func WriteDiskCopy(path string, t *topology.Topology) error {
	if err := t.Validate(); err != nil {
		return fmt.Errorf("topostore: write disk copy %s: %w", path, err)
	}
	data, err := t.Encode()
	if err != nil {
		return fmt.Errorf("topostore: write disk copy %s: encode: %w", path, err)
	}
	return writeFileAtomic(path, data)
}

func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("topostore: write disk copy: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("topostore: write disk copy: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	// The topology names hosts and ports but no secrets (passwords are referenced, never stored);
	// other local processes of the node may read it.
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("topostore: write disk copy: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("topostore: write disk copy %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("topostore: write disk copy %s: fsync: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("topostore: write disk copy %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("topostore: write disk copy: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("topostore: write disk copy: open dir for fsync: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("topostore: write disk copy: fsync dir %s: %w", dir, err)
	}
	return nil
}
