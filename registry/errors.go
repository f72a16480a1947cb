package registry

import "errors"

// ErrNotFound is returned (wrapped) when a key (inode, entry, part, xattr)
// does not exist. Badger's ErrKeyNotFound never leaves this package.
var ErrNotFound = errors.New("not found")

// ErrExists is returned when creating something whose key is taken.
var ErrExists = errors.New("already exists")

// ErrTooBig is returned when a transaction grew past Badger's limit; the
// caller splits the work into several transactions.
var ErrTooBig = errors.New("transaction too big")

// ErrConflict is returned by Update when a transaction still conflicted
// after the bounded number of retries.
var ErrConflict = errors.New("transaction conflict")

// ErrCorrupt is returned when a stored value cannot be decoded, or when
// Open finds the Badger files damaged.
var ErrCorrupt = errors.New("registry damaged")

// ErrReadOnly is returned by Update and by writes when the registry was
// opened with Options.ReadOnly, or by a write inside View.
var ErrReadOnly = errors.New("registry is read-only")

// ErrStop is returned by a callback to end an iteration early; the
// iterating method then returns nil.
var ErrStop = errors.New("stop iteration")

// ErrNoSpace is returned by Grow when the registry's filesystem has less
// free space than Options.MinFree: Badger writes its memtable logs through
// memory maps, and a page it cannot allocate on a full disk kills the
// process with SIGBUS instead of failing a write.
var ErrNoSpace = errors.New("no space left on device for the registry")
