package main

// Exit codes of the pfs command, in one place (as gocryptfs's
// internal/exitcodes). Scripts may rely on them; do not renumber.
const (
	// exitOK: the command did what was asked.
	exitOK = 0
	// exitProblems: fsck found problems that remain after it finished
	// (with --repair: problems it could not repair).
	exitProblems = 1
	// exitUsage: bad command line: unknown flag, bad flag value, wrong
	// number of arguments, or a setting Config.Validate rejects. Nothing
	// was changed.
	exitUsage = 2
	// exitError: any other failure (I/O error, engine error).
	exitError = 3
	// exitLocked: another process holds the store (a mount, or another
	// offline command).
	exitLocked = 4
	// exitNotFound: a path or file ID given on the command line does not
	// exist in the store.
	exitNotFound = 5
	// exitDamaged: data could not be read because a part failed its MD5
	// check or is missing; see `pfs fsck`.
	exitDamaged = 6
	// exitMount: mounting failed (bad mountpoint, FUSE error, the daemon
	// died before it was ready).
	exitMount = 7
	// exitBusy: unmount refused because files under the mountpoint are in
	// use.
	exitBusy = 8
	// exitUnmount: unmounting failed for another reason, or the daemon did
	// not exit in time after the unmount.
	exitUnmount = 9
	// exitInterrupted: SIGINT or SIGTERM stopped an offline command (128 +
	// SIGINT, as shells report it). put and get leave no partial files.
	exitInterrupted = 130
)
