package mem_test

import (
	"testing"

	"github.com/pfs-project/pfs/chunkstore/backend"
	"github.com/pfs-project/pfs/chunkstore/backend/backendtest"
	"github.com/pfs-project/pfs/chunkstore/backend/mem"
)

func TestBackend(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend { return mem.New() })
}
