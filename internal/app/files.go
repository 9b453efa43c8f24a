package app

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/purserhq/purser/internal/keystore"
)

// privateFiles are the data directory's files that only the server may
// read: the database (it names every agent, payee and spend) with its
// WAL, the owner token and the sealed keys. audit.pub is public.
var privateFiles = []string{"purser.db", "purser.db-wal", "purser.db-shm", "purser.db-journal", "owner.token", "kek", "seed.enc"}

// secureDataDir makes the data directory 0700 and its private files 0600,
// fixing (and logging) what an older version, a restore from backup or a
// permissive umask left readable by others. A mode it cannot fix stops
// the start: serving from a readable key directory is not an option.
func secureDataDir(dir string, log *slog.Logger) error {
	if err := fixMode(dir, 0o700, log); err != nil {
		return err
	}
	for _, name := range privateFiles {
		if err := fixMode(filepath.Join(dir, name), 0o600, log); err != nil {
			return err
		}
	}
	return nil
}

func fixMode(path string, want fs.FileMode, log *slog.Logger) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("data dir: %s is a symbolic link; Purser keeps its files in the data directory itself", path)
	}
	if got := fi.Mode().Perm(); got != want {
		if err := os.Chmod(path, want); err != nil {
			return fmt.Errorf("data dir: %s has mode %04o and cannot be made %04o: %w", path, got, want, err)
		}
		log.Warn("fixed file mode", "path", path, "was", fmt.Sprintf("%04o", got), "now", fmt.Sprintf("%04o", want))
	}
	return nil
}

// createPrivate creates path empty with mode 0600 unless it exists, so
// SQLite opens a file nobody else can read (it gives the WAL and shared
// memory files the database file's mode).
func createPrivate(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	return f.Close()
}

// deploymentID names this deployment in agent signatures (EIP-712 domain
// version 2). It is derived from the master seed, so every node of a
// cluster (they share the seed: they derive the same wallets and audit
// key) has the same id without coordination, and two deployments with
// their own seeds never share one. It is public: HKDF output reveals
// nothing of the seed.
func deploymentID(ks *keystore.Keystore) [32]byte {
	var id [32]byte
	k := ks.DeriveKey("deployment-id/v1")
	copy(id[:], k)
	return id
}

// listenHost is the host of the listen address ("" for all interfaces,
// which the IP-literal rule covers).
func listenHost(listen string) string {
	h, _, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	return h
}
