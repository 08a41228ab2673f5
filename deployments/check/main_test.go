package check

import (
	"os"
	"path/filepath"
	"testing"
)

// TestMain removes what the run left in the temporary directory: the
// Dockerfile build's context and output, and the generated schemas.
func TestMain(m *testing.M) {
	code := m.Run()
	if schemas.dir != "" {
		os.RemoveAll(schemas.dir)
	}
	for _, f := range built.img.files {
		// Every file is under OUT, itself under the build's temporary dir.
		dir := f
		for filepath.Base(filepath.Dir(dir)) != "out" && dir != "/" {
			dir = filepath.Dir(dir)
		}
		os.RemoveAll(filepath.Dir(filepath.Dir(dir)))
		break
	}
	os.Exit(code)
}
