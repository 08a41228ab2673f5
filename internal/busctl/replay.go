package busctl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// replayPoll is how often busctl reads a running replay's progress.
const replayPoll = 200 * time.Millisecond

// replayBarWidth is the width of the progress bar, in cells.
const replayBarWidth = 30

func (a *app) pluginsReplayCommand() *cobra.Command {
	var (
		since, fromTime string
		fromSeq         int64
		types           []string
		status, cancel  bool
	)
	cmd := &cobra.Command{
		Use:   "replay NAME --since 2h|--from-seq N|--from-time T [--type T]...",
		Short: "Redeliver past events to one plugin, without disturbing the others",
		Long: `Redeliver past events to one plugin: those of the types it consumes (or of
--type, each one of them) stored since --since (a duration back, such as 2h, or
a time), from stream sequence --from-seq, or from --from-time on, up to the last
event the plugin had been given. Other plugins see nothing of it, and the
plugin keeps its place for new events, which keep coming during the replay and
are not delivered twice.

The events are the stored ones with their original ids; the SDK marks each
replayed event (CloudEvents extension plugbusreplay, sdk.ReplayOf), and
Plugin.OnceByEventID handles it once more, once per replay. See docs/replay.md.

busctl waits until the plugin has handled every replayed event, with a
progress bar on a terminal, and prints how many were replayed (-o json: the
replay's status). Ctrl-C stops waiting, not the replay: --status follows a
running replay again, --cancel stops it. One replay per plugin at a time; only
admins may replay.`,
		Args: exactArgs("NAME"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			name := args[0]
			f := cmd.Flags()
			starts := 0
			for _, fl := range []string{"since", "from-seq", "from-time"} {
				if f.Changed(fl) {
					starts++
				}
			}
			req := schemas.PluginReplayRequest{Name: name}
			switch {
			case status && cancel:
				return usageErrf("--status and --cancel go alone: pick one")
			case (status || cancel) && (starts > 0 || len(types) > 0):
				return usageErrf("--status and --cancel act on the running replay: drop --since, --from-seq, --from-time and --type")
			case !status && !cancel && starts == 0:
				return usageErrf("say where the replay starts: --since 2h, --from-seq N or --from-time 2025-05-01T12:00:00Z")
			case starts > 1:
				return usageErrf("--since, --from-seq and --from-time are alternatives: give one")
			}
			switch {
			case f.Changed("from-seq"):
				if fromSeq < 1 {
					return usageErrf("invalid --from-seq %d: a stream sequence is 1 or more (1 is the oldest event)", fromSeq)
				}
				req.FromSeq = uint64(fromSeq)
			case f.Changed("since"):
				t, err := parseSince(since, time.Now())
				if err != nil {
					return err
				}
				req.FromTime = &t
			case f.Changed("from-time"):
				t, err := time.Parse(time.RFC3339, fromTime)
				if err != nil {
					return usageErrf("invalid --from-time %q: use an RFC 3339 time such as 2025-05-01T12:00:00Z (or --since 2h)", fromTime)
				}
				req.FromTime = &t
			}
			for _, typ := range types {
				if _, err := typeFilter(a.prefix, typ); err != nil {
					return err
				}
			}
			req.Types = types
			c, err := a.client()
			if err != nil {
				return err
			}
			a.hint = func(e *schemas.Error) string { return replayHint(name, e) }
			ctx := cmd.Context()
			var st *schemas.ReplayStatus
			switch {
			case cancel:
				if st, err = c.CancelReplay(ctx, name); err != nil {
					return err
				}
				if a.structured() {
					return a.printValue(st)
				}
				_, err = fmt.Fprintf(a.stdout, "cancelled replay %s of %s: %d of %d events replayed\n", st.ID, name, st.Replayed, st.Total)
				return err
			case status:
				st, err = c.ReplayStatus(ctx, name)
			default:
				st, err = c.ReplayPlugin(ctx, req)
			}
			if err != nil {
				return err
			}
			return a.followReplay(ctx, c, st)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "replay the events of this long ago on (2h, 30m), or since this RFC 3339 time")
	f.Int64Var(&fromSeq, "from-seq", 0, "replay from this stream sequence on (1: the oldest event)")
	f.StringVar(&fromTime, "from-time", "", "replay the events stored at or after this RFC 3339 time")
	f.StringArrayVar(&types, "type", nil, "replay only this event type, one the plugin consumes (repeatable)")
	f.BoolVar(&status, "status", false, "follow the plugin's running replay until it is done")
	f.BoolVar(&cancel, "cancel", false, "stop the plugin's running replay")
	return cmd
}

// followReplay waits until a replay is done, drawing its progress on a
// terminal, then prints the outcome.
func (a *app) followReplay(ctx context.Context, c *client.Client, st *schemas.ReplayStatus) error {
	bar := a.lineBar()
	for !st.Done {
		drawReplay(bar, st)
		select {
		case <-ctx.Done():
			bar.clear()
			fmt.Fprintf(a.stderr, "stopped waiting; the replay goes on: `busctl plugins replay %s --status` follows it, `--cancel` stops it\n", st.Plugin)
			return nil
		case <-time.After(replayPoll):
		}
		next, err := c.ReplayStatus(ctx, st.Plugin)
		if errors.Is(err, schemas.ErrNotFound) && ctx.Err() == nil {
			bar.clear()
			return fmt.Errorf("replay %s of %s is gone before it was done: cancelled (busctl plugins replay %s --cancel), or another `--status` saw it finish",
				st.ID, st.Plugin, st.Plugin)
		}
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			bar.clear()
			return err
		}
		st = next
	}
	drawReplay(bar, st)
	bar.finish()
	if a.structured() {
		return a.printValue(st)
	}
	_, err := fmt.Fprintln(a.stdout, replaySummary(st))
	return err
}

// replaySummary is the line busctl prints when a replay is done.
func replaySummary(st *schemas.ReplayStatus) string {
	from := fmt.Sprintf("from stream sequence %d on", st.FromSeq)
	if st.FromTime != nil {
		from = "stored since " + st.FromTime.UTC().Format(time.RFC3339)
	}
	types := strings.Join(st.Types, ", ")
	if st.Total == 0 {
		return fmt.Sprintf("nothing to replay: %s had been given no event of %s %s", st.Plugin, types, from)
	}
	unit := "events"
	if st.Total == 1 {
		unit = "event"
	}
	return fmt.Sprintf("replayed %d %s of %s to %s, %s", st.Replayed, unit, types, st.Plugin, from)
}

// replayHint explains the replay's own errors.
func replayHint(name string, e *schemas.Error) string {
	switch {
	case e.Code == schemas.CodeInvalidField && strings.HasPrefix(e.Field, "types"):
		if allowed := detailList(e, schemas.DetailAllowed); allowed != "" {
			return fmt.Sprintf("%s consumes %s: pass those to --type, or leave --type out for all of them", name, allowed)
		}
	case e.Code == schemas.CodeConflict && detailString(e, schemas.DetailKind) == "replay":
		return fmt.Sprintf("`busctl plugins replay %s --status` follows the running replay, `busctl plugins replay %s --cancel` stops it", name, name)
	case e.Code == schemas.CodeNotFound && detailString(e, schemas.DetailKind) == "replay":
		return fmt.Sprintf("start one with `busctl plugins replay %s --since 1h`", name)
	case e.Code == schemas.CodeNotActive:
		return fmt.Sprintf("`busctl plugins get %s` shows its state and last error; a replay needs it ACTIVE", name)
	}
	return ""
}

// drawReplay draws a replay's progress on bar, once it knows the total.
func drawReplay(bar *lineBar, st *schemas.ReplayStatus) {
	if st.Total > 0 {
		bar.draw(progressLine(st.Plugin, st.Replayed, st.Total, replayBarWidth))
	}
}

// progressLine renders "replaying NAME [=====>     ] 12/40 events": done
// of total, in width cells.
func progressLine(plugin string, done, total uint64, width int) string {
	if total == 0 {
		total = 1
	}
	done = min(done, total)
	filled := int(done * uint64(width) / total)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("replaying %s [%s] %d/%d events", plugin, bar, done, total)
}
