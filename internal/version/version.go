// Package version says which plugbus a binary is: the release and what the
// Go build info records (module version, VCS revision and time, whether
// the tree was modified). Every binary's --version prints String.
package version

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Release is the plugbus release this tree builds. The broker and hostd
// report it as their service version.
const Release = "0.2.0"

// module is the plugbus module path.
const module = "github.com/plugbus/plugbus"

// Info is what the build info says about plugbus in this binary.
type Info struct {
	// Module is the plugbus module's version: "(devel)" when built from a
	// checkout, a tag or pseudo-version when fetched as a dependency.
	Module   string
	Revision string
	Time     string
	Modified bool
}

// Read reads the build info.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Module: "unknown"}
	}
	info := Info{Module: bi.Main.Version}
	if bi.Main.Path != module {
		info.Module = "not found"
		for _, d := range bi.Deps {
			if d.Path == module {
				info.Module = d.Version
				if d.Replace != nil {
					info.Module = d.Version + " => " + d.Replace.Path
				}
			}
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the version line of a binary: "NAME VERSION (plugbus MODULE,
// commit REV, TIME[, modified])", where version is the binary's own (the
// release for plugbus's binaries, the manifest's for a plugin).
func String(name, ver string) string {
	info := Read()
	parts := []string{"plugbus " + info.Module}
	if info.Revision != "" {
		rev := info.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		parts = append(parts, "commit "+rev)
	}
	if info.Time != "" {
		parts = append(parts, info.Time)
	}
	if info.Modified {
		parts = append(parts, "modified")
	}
	return fmt.Sprintf("%s %s (%s)", name, ver, strings.Join(parts, ", "))
}
