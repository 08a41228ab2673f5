package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/plugbus/plugbus/schemas"
)

// The actions an admin takes from the pages are each one broker API call.

// actionResult is what an action answers: what happened, in words.
type actionResult struct {
	Message string `json:"message"`
	Result  any    `json:"result,omitempty"`
}

func (d *Dashboard) call(ctx context.Context, endpoint string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CallTimeout)
	defer cancel()
	err := d.api.Call(ctx, endpoint, req, resp)
	if e := schemas.AsError(err); e != nil && e.Code == schemas.CodeNoResponders {
		return &schemas.Error{Code: schemas.CodeUnavailable,
			Message: fmt.Sprintf("no broker serves %s: this broker version does not have it, or no broker is connected", endpoint)}
	}
	return err
}

// actionVerify asks a plugin again whether it is ready (plugins.verify).
func (d *Dashboard) actionVerify(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var rec schemas.PluginRecord
	if err := d.call(r.Context(), schemas.APIPluginsVerify, schemas.PluginGetRequest{Name: name}, &rec); err != nil {
		d.actionFailed(w, r, err)
		return
	}
	d.done(w, r, fmt.Sprintf("plugin %s verified: %s", name, rec.State), nil)
}

// pluginHostBody is the body of enable, disable and restart.
type pluginHostBody struct {
	Host string `json:"host"`
}

// actionPluginHost enables, disables or restarts a plugin on a host.
func (d *Dashboard) actionPluginHost(w http.ResponseWriter, r *http.Request) {
	name, verb := r.PathValue("name"), r.PathValue("verb")
	endpoint := map[string]string{"enable": schemas.APIPluginsEnable, "disable": schemas.APIPluginsDisable, "restart": schemas.APIPluginsRestart}[verb]
	if endpoint == "" {
		writeError(w, http.StatusNotFound, schemas.Errorf(schemas.CodeNotFound, "verb", "no action %q on plugins: use verify, enable, disable or restart", verb))
		return
	}
	var body pluginHostBody
	if err := readBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var resp schemas.PluginHostResponse
	if err := d.call(r.Context(), endpoint, schemas.PluginHostRequest{Name: name, Host: body.Host}, &resp); err != nil {
		d.actionFailed(w, r, err)
		return
	}
	where := "on " + body.Host
	if body.Host == "" {
		where = "on every host running it"
	}
	d.done(w, r, fmt.Sprintf("plugin %s: %s %s", name, verb, where), resp)
}

// actionReplay replays one dead letter to the consumer that gave up on it
// (dlq.replay), once.
func (d *Dashboard) actionReplay(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, schemas.Errorf(schemas.CodeInvalidField, "seq", "%q is not a dead letter's sequence", r.PathValue("seq")))
		return
	}
	s, _ := r.Context().Value(sessionKey{}).(*session)
	by := "dashboard"
	if s != nil {
		by += " (" + s.user + ")"
	}
	var resp schemas.DLQReplayResponse
	if err := d.call(r.Context(), schemas.APIDLQReplay, schemas.DLQReplayRequest{Seqs: []uint64{seq}, RequestedBy: by}, &resp); err != nil {
		d.actionFailed(w, r, err)
		return
	}
	if len(resp.Results) != 1 {
		d.actionFailed(w, r, &schemas.Error{Code: schemas.CodeInternal, Message: fmt.Sprintf("dlq.replay answered %d results for one dead letter", len(resp.Results))})
		return
	}
	if e := resp.Results[0].Error; e != nil {
		d.actionFailed(w, r, e)
		return
	}
	msg := fmt.Sprintf("dead letter %d replayed to %s", seq, resp.Results[0].Consumer)
	if res := resp.Results[0]; res.Status == schemas.ReplayAlreadyReplayed && res.Replay != nil {
		msg = fmt.Sprintf("dead letter %d was already replayed at %s (as event %d): it is replayed once", seq, res.Replay.ReplayedAt.UTC().Format(time.RFC3339), res.Replay.EventSeq)
	}
	d.done(w, r, msg, resp)
}

func (d *Dashboard) done(w http.ResponseWriter, r *http.Request, msg string, result any) {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	user := ""
	if s != nil {
		user = s.user
	}
	d.log.Info().Str("user", user).Str("action", r.URL.Path).Msg(msg)
	writeJSON(w, http.StatusOK, actionResult{Message: msg, Result: result})
}

func (d *Dashboard) actionFailed(w http.ResponseWriter, r *http.Request, err error) {
	e := schemas.AsError(err)
	d.log.Warn().Str("action", r.URL.Path).Str("code", e.Code).Msg(e.Message)
	writeError(w, schemas.HTTPStatus(e.Code), e)
}

// maxBody bounds an action's body.
const maxBody = 4 << 10

func readBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return schemas.Errorf(schemas.CodeBadRequest, "", "read the request body: %v", err)
	}
	if len(b) > maxBody {
		return schemas.Errorf(schemas.CodeTooLarge, "", "the request body is over %d bytes", maxBody)
	}
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return schemas.Errorf(schemas.CodeBadRequest, "", "the request body is not JSON: %v", err)
		}
		return schemas.Errorf(schemas.CodeInvalidField, "", "the request body: %v", err)
	}
	return nil
}

// actionCancel cancels a long action that has not ended (actions.cancel):
// the plugin's handler sees its context cancelled.
func (d *Dashboard) actionCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s, _ := r.Context().Value(sessionKey{}).(*session)
	reason := "cancelled from the dashboard"
	if s != nil {
		reason += " by " + s.user
	}
	var resp schemas.ActionCancelResponse
	if err := d.call(r.Context(), schemas.APIActionsCancel, schemas.ActionCancelRequest{ID: id, Reason: reason}, &resp); err != nil {
		d.actionFailed(w, r, err)
		return
	}
	msg := fmt.Sprintf("action %s cancelled; the plugin was told", id)
	if !resp.Notified {
		msg = fmt.Sprintf("action %s cancelled; no instance answered the notice, so what the plugin reports later is ignored", id)
	}
	d.done(w, r, msg, resp)
}
