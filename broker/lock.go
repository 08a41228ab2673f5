package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// ErrDataDirInUse is wrapped by the error of a broker whose data dir
// another broker holds.
var ErrDataDirInUse = errors.New("data dir in use")

// lockFileName is the lock an embedded broker holds on its data dir.
const lockFileName = "broker.lock"

// dataDirLock is the lock on an embedded broker's data dir: a second
// broker on the same dir would run a second JetStream on the same files.
type dataDirLock struct {
	fl *flock.Flock
}

// lockDataDir takes the data dir's lock before anything is written there,
// or says which process holds it.
func lockDataDir(dir string) (*dataDirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, lockFileName)
	fl := flock.New(path)
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	if !ok {
		holder := "another process"
		if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			holder = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w: %s is held by %s: stop that broker, or give this one another --data-dir", ErrDataDirInUse, dir, holder)
	}
	// Say who holds it, for the next one to ask.
	who := "broker pid " + strconv.Itoa(os.Getpid()) + " since " + time.Now().UTC().Format(time.RFC3339)
	if err := os.WriteFile(path, []byte(who+"\n"), 0o600); err != nil {
		_ = fl.Unlock()
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	return &dataDirLock{fl: fl}, nil
}

func (l *dataDirLock) release() {
	if l != nil {
		_ = l.fl.Unlock()
	}
}
