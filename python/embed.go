// Package python carries the pipedef library into the binary: the boss runs
// pipedefs against the very library version it understands, so it writes
// these files out and puts them first on the pipedefs' import path.
package python

import (
	"embed"
	"io/fs"
)

//go:embed bettertest/*.py bettertest/py.typed
var files embed.FS

// Library is the bettertest package: bettertest/__init__.py and the rest.
func Library() fs.FS { return files }
