package backend

import "fmt"

// CheckRange validates a Load range against an object of the given size and
// returns how many bytes the range covers. A length < 0 means "to the end".
// The range must lie inside the object: offset == size is allowed (it yields
// zero bytes), anything past it returns ErrInvalidRange.
func CheckRange(size, offset, length int64) (int64, error) {
	switch {
	case offset < 0 || offset > size:
		return 0, fmt.Errorf("offset %d, length %d, size %d: %w", offset, length, size, ErrInvalidRange)
	case length < 0:
		return size - offset, nil
	case length > size-offset:
		return 0, fmt.Errorf("offset %d, length %d, size %d: %w", offset, length, size, ErrInvalidRange)
	}
	return length, nil
}
