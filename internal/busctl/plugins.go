package busctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) pluginsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "plugins",
		Aliases: []string{"plugin"},
		Short:   "List, inspect and configure plugins; start, stop and read the logs of the ones hostd runs",
	})
	cmd.AddCommand(a.pluginsListCommand(), a.pluginsGetCommand(), a.pluginsVerifyCommand(), a.pluginsConfigCommand(), a.pluginsRemoveCommand(),
		a.pluginsEnableCommand(), a.pluginsDisableCommand(), a.pluginsRestartCommand(), a.pluginsLogsCommand(),
		a.pluginsCredsCommand(), a.pluginsRevokeCommand())
	cmd.AddCommand(a.pluginsReplayCommand())
	return cmd
}

func (a *app) pluginsListCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List registered plugins",
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			plugins, err := c.ListPlugins(cmd.Context(), schemas.PluginState(strings.ToUpper(state)))
			if err != nil {
				return err
			}
			if plugins == nil {
				plugins = []schemas.PluginRecord{}
			}
			if a.structured() {
				return a.printValue(schemas.PluginListResponse{Plugins: plugins})
			}
			w := newTable(a.stdout)
			row(w, "NAME", "VERSION", "STATE", "CONSUMER", "ACTIONS", "LAST ERROR")
			for _, p := range plugins {
				row(w, p.Name, p.Version, string(p.State), p.Consumer, actionNames(p.Manifest.Actions),
					truncate(lastError(p), 60))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringVar(&state, "state", "", "only plugins in this state (ACTIVE, ERROR, STALE, …)")
	return cmd
}

func (a *app) pluginsGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show one plugin: manifest summary, state, config and last error",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.GetPlugin(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(p)
			}
			return a.printPlugin(p)
		}),
	}
}

func (a *app) pluginsVerifyCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "verify NAME",
		Short: "Ask a plugin again whether it is ready (its verify step) and show its state",
		Long: `Ask a plugin again whether it is ready: the broker calls the plugin's verify
endpoint. An ACTIVE plugin that says it is not ready goes to ERROR (and leaves
its hook chains); a plugin in ERROR runs its whole lifecycle again (init,
config, verify) and is ACTIVE when every step passes, so a plugin whose
dependency came back needs no restart. Prints the plugin as plugins get does.

Exits 1 when the plugin is not ready (the error is its last error) or has no
running instance (STALE).`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			name := args[0]
			a.hint = func(e *schemas.Error) string {
				switch e.Code {
				case schemas.CodePluginError:
					return fmt.Sprintf("the plugin is in ERROR now; fix what it reports, then run `busctl plugins verify %s` again (`busctl plugins logs %s` shows its logs when hostd runs it)", name, name)
				case schemas.CodeNotActive:
					return fmt.Sprintf("start an instance of %s (with hostd: `busctl plugins restart %s`), then verify it", name, name)
				}
				return ""
			}
			p, err := c.VerifyPlugin(cmd.Context(), name)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(p)
			}
			return a.printPlugin(p)
		}),
	}
}

func (a *app) pluginsRemoveCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NAME",
		Aliases: []string{"remove", "unregister"},
		Short:   "Unregister a plugin: remove its record, config and durable consumer",
		Long: `Unregister a plugin: the broker removes its registry record, its config and its
durable consumer (events it had not consumed yet are no longer kept for it), drops
it from every hook chain and publishes io.plugbus.plugin.v1.unregistered.

The broker refuses while an instance of the plugin still answers: stop it first,
or pass --force (a running instance that registers again comes back).`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			p, err := c.UnregisterPlugin(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(p)
			}
			_, err = fmt.Fprintf(a.stdout, "unregistered %s %s\n", p.Name, p.Version)
			return err
		}),
	}
	cmd.Flags().BoolVar(&force, "force", false, "unregister even if an instance is still running")
	return cmd
}

func (a *app) pluginsConfigCommand() *cobra.Command {
	var sets []string
	cmd := &cobra.Command{
		Use:   "config NAME [--set KEY=VALUE]...",
		Short: "Show or change a plugin's configuration",
		Long: `Show a plugin's configuration, or change keys of it with --set.

A value that is valid JSON is sent as JSON (--set step=2 sends the number 2,
--set debug=true a boolean, --set 'tags=["a","b"]' a list); anything else is
sent as a string (quote it as JSON to force a string: --set 'step="2"').
When the plugin's config_schema declares a key as an array, a plain value is
split on commas: --set hosts=a,b,c sends ["a","b","c"].

The broker merges the keys over the current configuration, validates the
result against the plugin's required params and config schema, stores it and
pushes it to the plugin. The resulting configuration is printed.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			pairs, err := parsePairs("set", sets)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = func(e *schemas.Error) string {
				if e.Code == schemas.CodeInvalidField {
					return fmt.Sprintf("`busctl plugins get %s -o json` shows the config_schema the value must satisfy", name)
				}
				return ""
			}
			var set map[string]any
			if len(pairs) > 0 {
				// The manifest's config schema says which keys are lists.
				rec, err := c.GetPlugin(cmd.Context(), name)
				if err != nil {
					return err
				}
				set = make(map[string]any, len(pairs))
				for k, v := range pairs {
					if isArray, itemType := arrayProperty(rec.Manifest.ConfigSchema, k); isArray {
						set[k] = parseListValue(v, itemType)
					} else {
						set[k] = parseValue(v)
					}
				}
			}
			rec, err := c.ConfigPlugin(cmd.Context(), name, set)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(rec)
			}
			w := newTable(a.stdout)
			row(w, "KEY", "VALUE")
			for _, k := range sortedKeys(rec.Config) {
				row(w, k, fmtValue(rec.Config[k]))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringArrayVar(&sets, "set", nil, "set a config key: KEY=VALUE (repeatable; JSON values are sent as JSON)")
	return cmd
}

// printPlugin shows one plugin record as "KEY: value" lines.
func (a *app) printPlugin(p *schemas.PluginRecord) error {
	m := p.Manifest
	w := newTable(a.stdout)
	kv := func(k, v string) {
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(w, "%s:\t%s\n", k, v)
	}
	kv("NAME", p.Name)
	kv("VERSION", p.Version)
	kv("STATE", string(p.State))
	kv("DESCRIPTION", m.Description)
	kv("CATEGORY", m.Category)
	kv("URL", m.URL)
	kv("PRIORITY", fmt.Sprint(m.Priority))
	kv("CONSUMER", p.Consumer)
	if m.Events != nil {
		kv("EVENTS", strings.Join(m.Events.Types, ", "))
	} else {
		kv("EVENTS", "")
	}
	var hooks []string
	for _, h := range m.Hooks {
		prio := m.Priority
		if h.Priority != nil {
			prio = *h.Priority
		}
		policy := h.FailurePolicy
		if policy == "" {
			policy = schemas.DefaultFailurePolicy(h.Hook)
		}
		hooks = append(hooks, fmt.Sprintf("%s (priority %d, %s)", h.Hook, prio, policy))
	}
	kv("HOOKS", strings.Join(hooks, ", "))
	var actions []string
	for _, ac := range m.Actions {
		s := ac.Command
		if ac.Model != "" {
			s += " on " + ac.Model
		}
		if len(ac.RequiredParams) > 0 {
			s += " requires " + strings.Join(ac.RequiredParams, ",")
		}
		if len(ac.OptionalParams) > 0 {
			s += " optional " + strings.Join(ac.OptionalParams, ",")
		}
		actions = append(actions, s)
	}
	kv("ACTIONS", strings.Join(actions, "; "))
	kv("REQUIRED PARAMS", strings.Join(m.RequiredParams, ", "))
	if len(p.Config) > 0 {
		kv("CONFIG", fmtValue(p.Config))
	} else {
		kv("CONFIG", "")
	}
	kv("LAST ERROR", lastError(*p))
	kv("REGISTERED", fmtTime(p.RegisteredAt))
	kv("UPDATED", fmtTime(p.UpdatedAt))
	return w.Flush()
}

// actionNames lists a manifest's commands, "-" when there are none.
func actionNames(actions []schemas.ActionSpec) string {
	names := make([]string, 0, len(actions))
	for _, ac := range actions {
		names = append(names, ac.Command)
	}
	return strings.Join(names, ",")
}

// lastError shows a plugin's last error as busctl shows API errors,
// without naming the plugin itself again.
func lastError(p schemas.PluginRecord) string {
	if p.LastError == nil {
		return ""
	}
	e := *p.LastError
	if e.Plugin == p.Name {
		e.Plugin = ""
	}
	return apiErrorText(&e)
}
