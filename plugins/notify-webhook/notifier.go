package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/plugbus/plugbus/schemas"
	"github.com/plugbus/plugbus/sdk"
)

// HTTPTimeout bounds one POST to the webhook.
const HTTPTimeout = 10 * time.Second

// Message is a Slack-compatible incoming-webhook message.
type Message struct {
	Text        string       `json:"text"`
	Username    string       `json:"username,omitempty"`
	Channel     string       `json:"channel,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
}

// Attachment is a Slack message attachment.
type Attachment struct {
	Color    string  `json:"color"`
	Fallback string  `json:"fallback,omitempty"`
	Fields   []Field `json:"fields,omitempty"`
	Footer   string  `json:"footer,omitempty"`
	Ts       int64   `json:"ts,omitempty"`
}

// Field is one attachment field.
type Field struct {
	Title string `json:"title"`
	Value string `json:"value"`
	Short bool   `json:"short"`
}

// Notifier turns alert events into webhook calls.
type Notifier struct {
	config func() sdk.Config
	client *http.Client
}

// NewNotifier returns a Notifier reading its config from config (the
// plugin's current config).
func NewNotifier(config func() sdk.Config) *Notifier {
	return &Notifier{config: config, client: &http.Client{Timeout: HTTPTimeout}}
}

// CheckConfig accepts a config whose url is an absolute http(s) URL.
func (n *Notifier) CheckConfig(_ context.Context, cfg sdk.Config) error {
	raw := cfg.String(ConfigURL, "")
	if raw == "" {
		return schemas.Errorf(schemas.CodeMissingParam, "config."+ConfigURL, "url is required: the webhook to post alerts to")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return schemas.Errorf(schemas.CodeInvalidField, "config."+ConfigURL, "url must be an absolute http(s) URL, got %s", redact(raw))
	}
	return nil
}

// HandleEvent posts one alert event. Its error tells the SDK what to do:
// retry (network error, 5xx, 429), or give up (other 4xx, bad data).
func (n *Notifier) HandleEvent(ctx context.Context, e event.Event) error {
	alert, err := sdk.DecodeData[schemas.Alert](e)
	if err != nil {
		return err
	}
	cfg := n.config()
	target := cfg.String(ConfigURL, "")
	if target == "" {
		return errors.New("no webhook url configured") // retried: config may arrive
	}
	msg := BuildMessage(e.Type(), alert, cfg.String(ConfigChannel, ""), cfg.String(ConfigUsername, ""))
	body, err := json.Marshal(msg)
	if err != nil {
		return sdk.Permanent(fmt.Errorf("encode message: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return sdk.Permanent(fmt.Errorf("build request to %s: %v", redact(target), err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "plugbus-notify-webhook/"+Version)
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %v", redact(target), unwrapURLError(err))
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return classify(resp, strings.TrimSpace(string(snippet)), redact(target))
}

// classify maps a webhook answer to nil, a retryable error or a permanent one.
func classify(resp *http.Response, snippet, target string) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := fmt.Errorf("webhook %s answered %s", target, resp.Status)
	if snippet != "" {
		err = fmt.Errorf("%w: %s", err, snippet)
	}
	switch {
	case code == http.StatusTooManyRequests:
		if d, ok := retryAfter(resp.Header.Get("Retry-After")); ok {
			return sdk.RetryAfter(d, err)
		}
		return err
	case code >= 400 && code < 500:
		return sdk.Permanent(err)
	default:
		return err
	}
}

// retryAfter parses a Retry-After header in seconds (an HTTP date is
// ignored; the backoff applies then).
func retryAfter(v string) (time.Duration, bool) {
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0, false
	}
	return min(time.Duration(s)*time.Second, 5*time.Minute), true
}

// severityColor maps a severity to an attachment color.
var severityColor = map[string]string{
	schemas.SeverityCritical: "danger",
	schemas.SeverityWarning:  "warning",
	schemas.SeverityInfo:     "#439FE0",
}

// BuildMessage renders an alert event as a webhook message: the summary in
// the text, the severity and the labels (sorted) as fields, colored by
// severity (green once resolved).
func BuildMessage(eventType string, a schemas.Alert, channel, username string) Message {
	status := "FIRING"
	color := severityColor[a.Severity]
	if color == "" {
		color = "#808080"
	}
	ts := a.FiredAt
	if eventType == schemas.TypeAlertResolved || a.Status == schemas.AlertResolved {
		status = "RESOLVED"
		color = "good"
		if a.ResolvedAt != nil {
			ts = *a.ResolvedAt
		}
	}
	text := fmt.Sprintf("[%s] %s: %s", status, strings.ToUpper(a.Severity), a.Summary)
	fields := []Field{{Title: "severity", Value: a.Severity, Short: true}, {Title: "alert", Value: a.ID, Short: true}}
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fields = append(fields, Field{Title: k, Value: a.Labels[k], Short: true})
	}
	att := Attachment{Color: color, Fallback: text, Fields: fields, Footer: "plugbus"}
	if !ts.IsZero() {
		att.Ts = ts.Unix()
	}
	return Message{Text: text, Username: username, Channel: channel, Attachments: []Attachment{att}}
}

// redact hides the path and query of a webhook URL, which carry its secret
// on Slack and most other services: https://hooks.slack.com/services/T/B/X
// becomes https://hooks.slack.com/….
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the
// full (secret) URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
