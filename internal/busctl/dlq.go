package busctl

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk/client"
)

// replayBatch is how many dead letters one dlq.replay call replays.
const replayBatch = 100

func (a *app) dlqCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "dlq",
		Short: "List, show, replay and purge dead letters (events a plugin gave up on)",
		Long: `Dead letters are the events a plugin gave up on: after its last delivery, or
at once when it said retrying cannot help. The broker keeps each, headers
and data as the plugin got them, in stream PLUGBUS_DLQ with why
(plugbus-dlq-* headers), for the DLQ max age (default 30 days).

replay sends a dead letter's event again to the plugin that gave up on it,
and to no other plugin, once; purge removes dead letters. Admins only.`,
	})
	cmd.AddCommand(a.dlqListCommand(), a.dlqShowCommand(), a.dlqReplayCommand(), a.dlqPurgeCommand())
	return cmd
}

// dlqSelection is the flags that pick dead letters by consumer and code.
type dlqSelection struct {
	consumer, plugin, code string
}

func (s *dlqSelection) flags(cmd *cobra.Command, what string) {
	f := cmd.Flags()
	f.StringVar(&s.consumer, "consumer", "", what+" of this consumer (plugin_NAME)")
	f.StringVar(&s.plugin, "plugin", "", what+" of this plugin's consumer (same as --consumer plugin_NAME)")
}

// consumerName returns the consumer --consumer or --plugin names.
func (s *dlqSelection) consumerName() (string, error) {
	if s.consumer != "" && s.plugin != "" {
		return "", usageErrf("--consumer and --plugin both name the consumer: give one")
	}
	if s.plugin != "" {
		return schemas.ConsumerName(s.plugin), nil
	}
	return s.consumer, nil
}

func validCode(code string) error {
	if code != "" && !slices.Contains(schemas.ReasonCodes, code) {
		return usageErrf("invalid --code %q: use one of %s", code, strings.Join(schemas.ReasonCodes, ", "))
	}
	return nil
}

// listDeadLetters pages through dlq.list, calling fn for each page, until
// count dead letters (0: all) were listed.
func (a *app) listDeadLetters(cmd *cobra.Command, c *client.Client, req schemas.DLQListRequest, count int, what string,
	fn func([]schemas.DeadLetter) error) error {
	var bar progress = noProgress{}
	defer func() { bar.Finish() }()
	listed := 0
	for first := true; ; first = false {
		req.Limit = schemas.MaxDLQPage
		if count > 0 {
			req.Limit = min(req.Limit, count-listed)
		}
		cctx, cancel := a.callCtx(cmd.Context())
		page, err := c.ListDeadLetters(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		if first {
			total := page.Pending
			if count > 0 {
				total = min(total, uint64(count))
			}
			bar = a.progress(total, what)
		}
		bar.Add(len(page.DeadLetters))
		listed += len(page.DeadLetters)
		if err := fn(page.DeadLetters); err != nil {
			return err
		}
		if page.NextSeq == 0 || (count > 0 && listed >= count) {
			return nil
		}
		req.FromSeq = page.NextSeq
	}
}

func (a *app) dlqListCommand() *cobra.Command {
	var (
		sel     dlqSelection
		fromSeq uint64
		count   int
	)
	cmd := &cobra.Command{
		Use:     "ls [--consumer C | --plugin P] [--code CODE] [--from-seq N] [-n|--count N]",
		Aliases: []string{"list"},
		Short:   "List dead letters, oldest first, with whether each was replayed",
		Long: `List the dead letters of PLUGBUS_DLQ, oldest first: every one, or with --count
the first N (from --from-seq on, a sequence in PLUGBUS_DLQ). --consumer (or
--plugin) keeps one consumer's, --code one reason code (` + strings.Join(schemas.ReasonCodes, ", ") + `).

Columns: SEQ (in PLUGBUS_DLQ, what show, replay and purge take), TIME (when
it was dead-lettered), CONSUMER (that gave up), TYPE and ID (the event's),
DELIVERIES, REPLAYED (when busctl dlq replay sent it again, else -) and
REASON (the reason code and message the consumer gave).

-o json prints {"dead_letters": [DeadLetter…]} (see docs/busctl.md).`,
		Args: exactArgs(),
		RunE: a.run(func(cmd *cobra.Command, _ []string) error {
			if count < 0 {
				return usageErrf("--count must be 0 or more, got %d", count)
			}
			consumer, err := sel.consumerName()
			if err != nil {
				return err
			}
			if err := validCode(sel.code); err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			all := []schemas.DeadLetter{}
			err = a.listDeadLetters(cmd, c, schemas.DLQListRequest{Consumer: consumer, Code: sel.code, FromSeq: fromSeq}, count, "listing dead letters",
				func(page []schemas.DeadLetter) error { all = append(all, page...); return nil })
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(schemas.DLQListResponse{DeadLetters: all, Pending: uint64(len(all))})
			}
			w := newTable(a.stdout)
			row(w, "SEQ", "TIME", "CONSUMER", "TYPE", "ID", "DELIVERIES", "REPLAYED", "REASON")
			for _, d := range all {
				replayed := ""
				if d.Replay != nil {
					replayed = fmtTime(d.Replay.ReplayedAt)
				}
				row(w, strconv.FormatUint(d.Seq, 10), fmtTime(d.Time), d.Consumer, d.EventType, d.EventID,
					strconv.FormatUint(d.Deliveries, 10), replayed, truncate(oneLine(d.Reason), 80))
			}
			return w.Flush()
		}),
	}
	sel.flags(cmd, "only the dead letters")
	f := cmd.Flags()
	f.StringVar(&sel.code, "code", "", "only dead letters with this reason code")
	f.Uint64Var(&fromSeq, "from-seq", 0, "start at this sequence of PLUGBUS_DLQ")
	f.IntVarP(&count, "count", "n", 0, "at most this many (default: all)")
	return cmd
}

func (a *app) dlqShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show SEQ",
		Short: "Show one dead letter: why it was given up on, its replay, and the event",
		Long: `Show one dead letter (SEQ is its sequence in PLUGBUS_DLQ, as dlq ls shows it):
the consumer that gave up, the reason, the deliveries, where the event was
stored, whether and how it was replayed, the event's attributes and its
data.

-o json prints the DeadLetter, with "message": the dead letter as stored
(headers, and the data in base64).`,
		Args: exactArgs("SEQ"),
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			d, err := c.GetDeadLetter(cmd.Context(), seq)
			if err != nil {
				return err
			}
			if a.structured() {
				return a.printValue(d)
			}
			w := newTable(a.stdout)
			kv := func(k, v string) {
				if v == "" {
					v = "-"
				}
				fmt.Fprintf(w, "%s:\t%s\n", k, oneLine(v))
			}
			kv("SEQ", strconv.FormatUint(d.Seq, 10))
			kv("DEAD-LETTERED", fmtTime(d.Time))
			kv("CONSUMER", d.Consumer)
			kv("CAUSE", d.Cause)
			kv("CODE", d.Code)
			kv("REASON", d.Reason)
			kv("DELIVERIES", strconv.FormatUint(d.Deliveries, 10))
			kv("STREAM-SEQ", fmt.Sprintf("%d (%s, subject %s)", d.StreamSeq, d.Stream, d.Subject))
			if r := d.Replay; r != nil {
				kv("REPLAYED", replayText(r))
			} else {
				kv("REPLAYED", "")
			}
			kv("EVENT ID", d.EventID)
			kv("EVENT TYPE", d.EventType)
			kv("EVENT SOURCE", d.EventSource)
			kv("EVENT SUBJECT", d.EventSubject)
			if err := w.Flush(); err != nil {
				return err
			}
			if d.Message == nil {
				return nil
			}
			ct := ""
			if v := d.Message.Header["ce-datacontenttype"]; len(v) > 0 {
				ct = v[0]
			}
			return printData(a.stdout, ct, d.Message.Data)
		}),
	}
}

// replayText says when and how a dead letter was replayed.
func replayText(r *schemas.DLQReplay) string {
	s := fmt.Sprintf("%s by %s", fmtTime(r.ReplayedAt), r.ReplayedBy)
	if r.RequestedBy != "" {
		s += " for " + r.RequestedBy
	}
	return s + fmt.Sprintf(" (event seq %d)", r.EventSeq)
}

// parseSeq reads a sequence of PLUGBUS_DLQ.
func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usageErrf("invalid SEQ %q: a dead letter's sequence in PLUGBUS_DLQ, a whole number from 1 (busctl dlq ls shows them)", s)
	}
	return seq, nil
}

// requestedBy is who busctl says a replay is for: $USER@host.
func requestedBy() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); name == "" && err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	switch {
	case name != "" && host != "":
		return name + "@" + host
	case name != "":
		return name
	}
	return host
}

// dlqReplaySummary is the -o json form of dlq replay.
type dlqReplaySummary struct {
	Results         []schemas.DLQReplayResult `json:"results"`
	Replayed        int                       `json:"replayed"`
	AlreadyReplayed int                       `json:"already_replayed"`
	Failed          int                       `json:"failed"`
}

// errReplayFailed says some dead letters were not replayed (the rows say
// why).
var errReplayFailed = errors.New("some dead letters were not replayed")

func (a *app) dlqReplayCommand() *cobra.Command {
	var (
		sel dlqSelection
		all bool
		by  string
	)
	cmd := &cobra.Command{
		Use:   "replay SEQ... | --consumer C | --plugin P | --all [--code CODE] [--requested-by WHO]",
		Short: "Send dead letters' events again to the plugin that gave up on each, once",
		Long: `Replay dead letters: the broker publishes each one's event again (its id, type,
source, data and other attributes as the plugin first got them) to the
consumer that gave up on it, and to no other plugin, and records the replay:
when, by which identity (admin) and for whom busctl says it asks
(--requested-by, default $USER@host: recorded as given, not checked).
A dead letter is replayed once: replaying it again says when it was
replayed and sends nothing. If the plugin gives up again, that is a new dead
letter, which can be replayed in turn.

The event goes into PLUGBUS_EVENTS on the consumer's redelivery subject,
PREFIX.evt.redeliver.CONSUMER.<the event's subject>, which that consumer's
durable (and no other plugin's) filters on: it arrives through the plugin's
own consumer, with its delivery settings, after what it had not consumed yet.

Name dead letters by SEQ (dlq ls shows them), or pick them: --consumer C
(--plugin P for plugin_P) or --all, narrowed by --code; dead letters already
replayed are counted as such and not sent again. Replaying many on a
terminal shows a progress bar.

Prints one row per named dead letter (SEQ, CONSUMER, EVENT, RESULT); when
picking, a summary line and a row for each one that was not replayed. Exits 1
when one could not be replayed (its row says why). -o json prints
{"results": [{seq, consumer, event_id, status, replay, error}…], "replayed": N,
"already_replayed": N, "failed": N}.`,
		Args: cobra.ArbitraryArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			consumer, err := sel.consumerName()
			if err != nil {
				return err
			}
			if err := validCode(sel.code); err != nil {
				return err
			}
			picking := consumer != "" || all
			switch {
			case len(args) > 0 && picking:
				return usageErrf("name dead letters by SEQ or pick them with --consumer, --plugin or --all, not both")
			case len(args) == 0 && !picking:
				return usageErrf("say which dead letters to replay: SEQ..., --consumer C, --plugin P or --all (`busctl dlq ls` lists them)")
			case len(args) > 0 && sel.code != "":
				return usageErrf("--code narrows --consumer, --plugin or --all, not SEQs")
			case consumer != "" && all:
				return usageErrf("--all replays every consumer's dead letters: drop --consumer or --plugin, or --all")
			}
			var seqs []uint64
			for _, s := range args {
				seq, err := parseSeq(s)
				if err != nil {
					return err
				}
				seqs = append(seqs, seq)
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			var sum dlqReplaySummary
			if picking {
				err := a.listDeadLetters(cmd, c, schemas.DLQListRequest{Consumer: consumer, Code: sel.code}, 0, "finding dead letters",
					func(page []schemas.DeadLetter) error {
						for _, d := range page {
							if d.Replay != nil {
								sum.Results = append(sum.Results, schemas.DLQReplayResult{Seq: d.Seq, Consumer: d.Consumer, EventID: d.EventID,
									Status: schemas.ReplayAlreadyReplayed, Replay: d.Replay})
								continue
							}
							seqs = append(seqs, d.Seq)
						}
						return nil
					})
				if err != nil {
					return err
				}
			}
			if by == "" {
				by = requestedBy()
			}
			bar := a.progress(uint64(len(seqs)), "replaying dead letters")
			for i := 0; i < len(seqs); i += replayBatch {
				batch := seqs[i:min(i+replayBatch, len(seqs))]
				cctx, cancel := a.callCtx(cmd.Context())
				res, err := c.ReplayDeadLetters(cctx, schemas.DLQReplayRequest{Seqs: batch, RequestedBy: by})
				cancel()
				if err != nil {
					bar.Finish()
					if i > 0 {
						fmt.Fprintf(a.stderr, "replayed %d of %d dead letters before this error; run the same command again for the rest\n", i, len(seqs))
					}
					return err
				}
				sum.Results = append(sum.Results, res.Results...)
				bar.Add(len(batch))
			}
			bar.Finish()
			if sum.Results == nil {
				sum.Results = []schemas.DLQReplayResult{}
			}
			slices.SortStableFunc(sum.Results, func(x, y schemas.DLQReplayResult) int {
				if !picking {
					return 0 // as named
				}
				return cmp.Compare(x.Seq, y.Seq)
			})
			for _, r := range sum.Results {
				switch r.Status {
				case schemas.ReplayReplayed:
					sum.Replayed++
				case schemas.ReplayAlreadyReplayed:
					sum.AlreadyReplayed++
				default:
					sum.Failed++
				}
			}
			if err := a.printReplay(sum, picking); err != nil {
				return err
			}
			if sum.Failed > 0 {
				return fmt.Errorf("%w: %d of %d failed (see the rows above)", errReplayFailed, sum.Failed, len(sum.Results))
			}
			return nil
		}),
	}
	sel.flags(cmd, "replay the dead letters")
	cmd.Flags().StringVar(&sel.code, "code", "", "only dead letters with this reason code (with --consumer, --plugin or --all)")
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter not replayed yet")
	cmd.Flags().StringVar(&by, "requested-by", "", "who the replay is for, recorded with it, such as a name or a ticket (default $USER@HOST)")
	return cmd
}

func (a *app) printReplay(sum dlqReplaySummary, picking bool) error {
	if a.structured() {
		return a.printValue(sum)
	}
	if picking {
		fmt.Fprintf(a.stdout, "replayed %s (%d already replayed, %d failed)\n", deadLetters(sum.Replayed), sum.AlreadyReplayed, sum.Failed)
	}
	var rows []schemas.DLQReplayResult
	for _, r := range sum.Results {
		if !picking || r.Status == schemas.ReplayFailed {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	w := newTable(a.stdout)
	row(w, "SEQ", "CONSUMER", "EVENT", "RESULT")
	for _, r := range rows {
		var result string
		switch r.Status {
		case schemas.ReplayReplayed:
			result = "replayed"
			if r.Replay != nil {
				result += fmt.Sprintf(" (event seq %d)", r.Replay.EventSeq)
			}
		case schemas.ReplayAlreadyReplayed:
			result = "already replayed"
			if r.Replay != nil {
				result += " " + replayText(r.Replay)
			}
		default:
			result = "failed"
			if r.Error != nil {
				result += ": " + apiErrorText(r.Error)
				if h := a.hintFor(r.Error); h != "" {
					result += " (" + h + ")"
				}
			}
		}
		row(w, strconv.FormatUint(r.Seq, 10), r.Consumer, r.EventID, oneLine(result))
	}
	return w.Flush()
}

func (a *app) dlqPurgeCommand() *cobra.Command {
	var (
		sel dlqSelection
		all bool
	)
	cmd := &cobra.Command{
		Use:   "purge SEQ... | --consumer C | --plugin P | --all",
		Short: "Remove dead letters",
		Long: `Remove dead letters from PLUGBUS_DLQ: the ones named by SEQ, every one of a
consumer (--consumer C, or --plugin P for plugin_P), or with --all every one.
They cannot be replayed afterwards. Exits 1 when a named SEQ is not there
(the others are removed). -o json prints {"purged": N, "not_found": [SEQ…]}.`,
		Args: cobra.ArbitraryArgs,
		RunE: a.run(func(cmd *cobra.Command, args []string) error {
			consumer, err := sel.consumerName()
			if err != nil {
				return err
			}
			n := 0
			for _, b := range []bool{len(args) > 0, consumer != "", all} {
				if b {
					n++
				}
			}
			if n != 1 {
				return usageErrf("say which dead letters to purge, one way: SEQ..., --consumer C, --plugin P or --all")
			}
			req := schemas.DLQPurgeRequest{Consumer: consumer, All: all}
			for _, s := range args {
				seq, err := parseSeq(s)
				if err != nil {
					return err
				}
				req.Seqs = append(req.Seqs, seq)
			}
			if len(req.Seqs) > schemas.MaxDLQPage {
				return usageErrf("at most %d SEQs at once, got %d: use --consumer or --all for more", schemas.MaxDLQPage, len(req.Seqs))
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.PurgeDeadLetters(cmd.Context(), req)
			if err != nil {
				return err
			}
			if a.structured() {
				if err := a.printValue(res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.stdout, "purged %s\n", deadLetters(int(res.Purged)))
			}
			if len(res.NotFound) > 0 {
				var s []string
				for _, seq := range res.NotFound {
					s = append(s, strconv.FormatUint(seq, 10))
				}
				e := &schemas.Error{Code: schemas.CodeNotFound, Message: "no dead letter " + strings.Join(s, ", ") + " in " + schemas.StreamDLQ + " (purged already, or older than the DLQ's max age)",
					Details: map[string]any{schemas.DetailKind: "dead_letter"}}
				return e
			}
			return nil
		}),
	}
	sel.flags(cmd, "purge the dead letters")
	cmd.Flags().BoolVar(&all, "all", false, "purge every dead letter")
	return cmd
}

// deadLetters says "1 dead letter", "2 dead letters".
func deadLetters(n int) string {
	if n == 1 {
		return "1 dead letter"
	}
	return strconv.Itoa(n) + " dead letters"
}
