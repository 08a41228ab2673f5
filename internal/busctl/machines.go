package busctl

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
)

func (a *app) machineCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "machine",
		Aliases: []string{"machines"},
		Short:   "Run actions on machines and manage their params",
	})
	cmd.AddCommand(a.machineActionCommand(), a.machineGetCommand(), a.machineListCommand(), a.machineParamsCommand(), a.machineSetParamCommand())
	return cmd
}

func (a *app) machineActionCommand() *cobra.Command {
	var (
		params       []string
		plugin       string
		wait, noWait bool
	)
	cmd := &cobra.Command{
		Use:   "action MACHINE COMMAND [--param K=V]... [--plugin P] [--no-wait]",
		Short: "Run an action on a machine and print the plugin's result",
		Long: `Run COMMAND on MACHINE through the plugin that offers it and print the
plugin's result, then one line per machine.pre_action hook step (plugin,
outcome, duration). With -o json the whole reply is printed (action_id,
machine, command, plugin, status, the plugin's result as JSON and the hook
chains).

busctl waits until the action ends (--wait, the default), however long it
runs, with a progress bar on stderr when the plugin reports progress and
stdout and stderr are a terminal (none with -o json or yaml). Ctrl-C stops waiting,
not the action. --no-wait prints the action's id as soon as the plugin has
taken it (-o json: the reply, status running): follow it with
` + "`busctl actions watch ID`" + `, cancel it with ` + "`busctl actions cancel ID`" + `.

A --param value that is valid JSON is sent as JSON, anything else as a
string. Required params missing from the call are taken from the machine's
params (see busctl machine set-param).`,
		Args: exactArgs("MACHINE", "COMMAND"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			machine, command := args[0], args[1]
			pairs, err := parsePairs("param", params)
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("wait") && wait && noWait {
				return usageErrf("--wait and --no-wait are alternatives: give one")
			}
			a.hint = runningActionHint
			// The broker answers once the plugin has taken the action;
			// busctl follows it from there, so no request is held open
			// for a long action.
			res, err := c.MachineAction(cmd.Context(), schemas.MachineActionRequest{
				Machine: machine, Command: command, Params: parseValues(pairs), Plugin: plugin, NoWait: true,
			})
			if err != nil {
				return err
			}
			if noWait || !wait {
				if a.structured() {
					return a.printValue(res)
				}
				_, err := fmt.Fprintln(a.stdout, res.ActionID)
				return err
			}
			if res.Status == schemas.ActionSucceeded || res.Status == "" {
				if a.structured() {
					return a.printValue(res)
				}
				if err := printResult(a.stdout, res.Result); err != nil {
					return err
				}
				return printChainLines(a.stdout, res.Chains, hasResult(res.Result))
			}
			return a.followAction(cmd.Context(), c, res.ActionID, res, false)
		}),
	}
	cmd.Flags().StringArrayVar(&params, "param", nil, "action param KEY=VALUE (repeatable; JSON values are sent as JSON)")
	cmd.Flags().StringVar(&plugin, "plugin", "", "plugin to run the action (when several offer the command)")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the action ends, with a progress bar on a terminal")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "print the action's id once the plugin has taken it, without waiting for its end")
	return cmd
}

// printResult prints a plugin's result: a JSON string as plain text,
// anything else as indented JSON, nothing for an empty result.
func printResult(w interface{ Write([]byte) (int, error) }, raw json.RawMessage) error {
	if !hasResult(raw) {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		_, err := fmt.Fprintln(w, s)
		return err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		_, err := fmt.Fprintln(w, string(raw))
		return err
	}
	return printJSON(w, v)
}

// hasResult says whether printResult prints anything for raw.
func hasResult(raw json.RawMessage) bool {
	t := strings.TrimSpace(string(raw))
	return t != "" && t != "null"
}

func (a *app) machineGetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a machine and its params",
		Args:  exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			m, err := c.GetMachine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printMachine(m)
		}),
	}
}

func (a *app) machineListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List machines",
		Args:    exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			machines, err := c.ListMachines(cmd.Context())
			if err != nil {
				return err
			}
			if machines == nil {
				machines = []schemas.Machine{}
			}
			if a.structured() {
				return a.printValue(schemas.MachineListResponse{Machines: machines})
			}
			w := newTable(a.stdout)
			row(w, "NAME", "PARAMS", "UPDATED")
			for _, m := range machines {
				row(w, m.Name, truncate(strings.Join(sortedKeys(m.Params), ","), 60), fmtTime(m.UpdatedAt))
			}
			return w.Flush()
		}),
	}
}

// machineParams is the -o json form of machine params.
type machineParams struct {
	Machine string         `json:"machine"`
	Params  map[string]any `json:"params"`
}

func (a *app) machineParamsCommand() *cobra.Command {
	var plugin string
	cmd := &cobra.Command{
		Use:   "params MACHINE [--plugin P]",
		Short: "List a machine's params and their values",
		Long: `List the params of MACHINE, one per line in key order, with their values (JSON
for anything but a string). --plugin P keeps the params named P/…, the ones
plugin P reads and writes by convention (incrementer/count).

-o json prints {"machine": NAME, "params": {PARAM: VALUE…}}.`,
		Args: exactArgs("MACHINE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			m, err := c.GetMachine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := machineParams{Machine: m.Name, Params: map[string]any{}}
			for k, v := range m.Params {
				if plugin == "" || strings.HasPrefix(k, plugin+"/") {
					out.Params[k] = v
				}
			}
			if a.structured() {
				return a.printValue(out)
			}
			w := newTable(a.stdout)
			row(w, "PARAM", "VALUE")
			for _, k := range sortedKeys(out.Params) {
				row(w, k, fmtValue(out.Params[k]))
			}
			return w.Flush()
		}),
	}
	cmd.Flags().StringVar(&plugin, "plugin", "", "only the params of this plugin (named PLUGIN/…)")
	return cmd
}

func (a *app) machineSetParamCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set-param MACHINE PARAM VALUE",
		Short: "Set one param on a machine (creating the machine if needed)",
		Long: `Set PARAM on MACHINE, creating the machine if it does not exist yet.

VALUE is sent as JSON when it is valid JSON (3, true, ["a","b"], {"k":1}),
otherwise as a string; null deletes the param.`,
		Args: exactArgs("MACHINE", "PARAM", "VALUE"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			m, err := c.SetMachineParam(cmd.Context(), args[0], args[1], parseValue(args[2]))
			if err != nil {
				return err
			}
			return a.printMachine(m)
		}),
	}
}

func (a *app) printMachine(m *schemas.Machine) error {
	if a.structured() {
		return a.printValue(m)
	}
	w := newTable(a.stdout)
	fmt.Fprintf(w, "NAME:\t%s\n", m.Name)
	fmt.Fprintf(w, "UPDATED:\t%s\n", fmtTime(m.UpdatedAt))
	fmt.Fprintln(w)
	row(w, "PARAM", "VALUE")
	for _, k := range sortedKeys(m.Params) {
		row(w, k, fmtValue(m.Params[k]))
	}
	return w.Flush()
}
