package busctl

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Reference returns the command reference of docs/busctl.md: every
// command of the tree, in tree order, with what it does and its flags, as
// Markdown tables. A test keeps the page equal to it.
func Reference() string {
	a := &app{stdout: io.Discard, stderr: io.Discard}
	root := a.rootCommand()
	// Defaults as they are without the environment ($NATS_URL and the
	// like), which the help of a run shows instead.
	for name, def := range map[string]string{"server": DefaultServer, "context": "", "tlscert": "", "tlskey": "", "tlsca": ""} {
		if f := root.PersistentFlags().Lookup(name); f != nil {
			f.DefValue = def
		}
	}
	var b strings.Builder
	b.WriteString("| command | what it does | flags |\n| --- | --- | --- |\n")
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if !sub.IsAvailableCommand() || sub.Name() == "help" {
				continue
			}
			if sub.HasAvailableSubCommands() {
				walk(sub)
				continue
			}
			name := sub.CommandPath()
			if args := strings.TrimSpace(strings.TrimPrefix(sub.Use, sub.Name())); args != "" {
				name += " " + args
			}
			what := sub.Short
			if len(sub.Aliases) > 0 {
				what += " (also `" + strings.Join(aliasPaths(sub), "`, `") + "`)"
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", mdCell(name), mdCell(what), flagCells(sub.LocalNonPersistentFlags()))
		}
	}
	walk(root)
	b.WriteString("\nGlobal flags, taken by every command:\n\n| flag | what it does |\n| --- | --- |\n")
	root.PersistentFlags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		fmt.Fprintf(&b, "| %s | %s |\n", flagName(f), mdCell(flagUsage(f)))
	})
	return b.String()
}

// aliasPaths are the other names of a command, in full.
func aliasPaths(c *cobra.Command) []string {
	parent := ""
	if c.HasParent() {
		parent = c.Parent().CommandPath() + " "
	}
	out := make([]string, len(c.Aliases))
	for i, al := range c.Aliases {
		out[i] = parent + al
	}
	return out
}

func flagCells(fs *pflag.FlagSet) string {
	var parts []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		parts = append(parts, flagName(f)+" "+mdCell(flagUsage(f)))
	})
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "<br>")
}

// flagName shows a flag as `-n, --count int`.
func flagName(f *pflag.Flag) string {
	varname, _ := pflag.UnquoteUsage(f)
	s := "--" + f.Name
	if f.Shorthand != "" {
		s = "-" + f.Shorthand + ", " + s
	}
	if varname != "" {
		s += " " + varname
	}
	return "`" + s + "`"
}

// flagUsage is a flag's help with its default when it has one.
func flagUsage(f *pflag.Flag) string {
	_, usage := pflag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "0", "false", "[]":
	default:
		usage += fmt.Sprintf(" (default %s)", f.DefValue)
	}
	return usage
}

// mdCell makes text safe in a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
