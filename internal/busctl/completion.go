package busctl

import (
	"github.com/spf13/cobra"
)

// completionCommand sets up cobra's `completion bash|zsh|fish|powershell`
// with busctl's own help text, and makes it a group: an unknown shell is a
// usage error rather than help and exit 0.
func (a *app) completionCommand(root *cobra.Command) {
	root.CompletionOptions.HiddenDefaultCmd = false
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Short = "Print the shell completion script for bash, zsh, fish or powershell"
		c.Long = `Print the script that makes the shell complete busctl's commands, flags and
arguments (plugin, host, machine and alert names, hook points, -o formats).

  bash:  source <(busctl completion bash)
         # for every new shell: busctl completion bash > /etc/bash_completion.d/busctl
         # (needs the bash-completion package)
  zsh:   source <(busctl completion zsh)
         # for every new shell: busctl completion zsh > "${fpath[1]}/_busctl"
         # (with "autoload -U compinit; compinit" in ~/.zshrc)
  fish:  busctl completion fish | source
         # for every new shell: busctl completion fish > ~/.config/fish/completions/busctl.fish

Names are completed by asking the broker, with the global flags given so far
(--server, --context, --creds); nothing is completed when it does not answer.`
		group(c)
	}
}
