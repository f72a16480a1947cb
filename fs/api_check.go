package fs

import (
	fusefs "github.com/hanwen/go-fuse/v2/fs"
)

// The go-fuse interfaces Node and its handles implement. go-fuse finds
// them by type assertion at run time, so a typo in a method signature
// would silently disable the operation; these make it a compile error.
var (
	_ = (fusefs.InodeEmbedder)((*Node)(nil))
	_ = (fusefs.NodeGetattrer)((*Node)(nil))
	_ = (fusefs.NodeSetattrer)((*Node)(nil))
	_ = (fusefs.NodeReadlinker)((*Node)(nil))
	_ = (fusefs.NodeStatfser)((*Node)(nil))

	_ = (fusefs.NodeLookuper)((*Node)(nil))
	_ = (fusefs.NodeCreater)((*Node)(nil))
	_ = (fusefs.NodeMknoder)((*Node)(nil))
	_ = (fusefs.NodeMkdirer)((*Node)(nil))
	_ = (fusefs.NodeSymlinker)((*Node)(nil))
	_ = (fusefs.NodeLinker)((*Node)(nil))
	_ = (fusefs.NodeUnlinker)((*Node)(nil))
	_ = (fusefs.NodeRmdirer)((*Node)(nil))
	_ = (fusefs.NodeRenamer)((*Node)(nil))
	_ = (fusefs.NodeOpendirHandler)((*Node)(nil))

	_ = (fusefs.NodeOpener)((*Node)(nil))
	_ = (fusefs.NodeTmpfiler)((*Node)(nil))

	_ = (fusefs.NodeGetxattrer)((*Node)(nil))
	_ = (fusefs.NodeSetxattrer)((*Node)(nil))
	_ = (fusefs.NodeRemovexattrer)((*Node)(nil))
	_ = (fusefs.NodeListxattrer)((*Node)(nil))

	_ = (fusefs.FileReaddirenter)((*dirHandle)(nil))
	_ = (fusefs.FileSeekdirer)((*dirHandle)(nil))
	_ = (fusefs.FileFsyncdirer)((*dirHandle)(nil))
	_ = (fusefs.FileReleasedirer)((*dirHandle)(nil))

	_ = (fusefs.FileReader)((*handle)(nil))
	_ = (fusefs.FileWriter)((*handle)(nil))
	_ = (fusefs.FileFlusher)((*handle)(nil))
	_ = (fusefs.FileFsyncer)((*handle)(nil))
	_ = (fusefs.FileReleaser)((*handle)(nil))
	_ = (fusefs.FileAllocater)((*handle)(nil))
	_ = (fusefs.FileLseeker)((*handle)(nil))
	_ = (fusefs.FileGetlker)((*handle)(nil))
	_ = (fusefs.FileSetlker)((*handle)(nil))
	_ = (fusefs.FileSetlkwer)((*handle)(nil))
)
