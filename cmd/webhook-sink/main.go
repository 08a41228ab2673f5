// Command webhook-sink is a tiny HTTP server for local runs: it prints every
// JSON message POSTed to it, so you can watch what notify-webhook sends
// without a Slack workspace. Paths under /reject answer 410 Gone, to watch
// a message being dead-lettered.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8099", "address to listen on")
	flag.Parse()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a JSON message", http.StatusMethodNotAllowed)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/reject") {
			// Point a plugin here to watch the dead-letter path: a 4xx is
			// an answer no retry can change.
			fmt.Fprintf(os.Stdout, "webhook-sink %s %s: rejected with 410\n", time.Now().Format("15:04:05"), r.URL.Path)
			http.Error(w, "this path rejects every message", http.StatusGone)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "  ", "  ") != nil {
			pretty.Write(body)
		}
		fmt.Fprintf(os.Stdout, "webhook-sink %s %s\n  %s\n", time.Now().Format("15:04:05"), r.URL.Path, pretty.String())
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok"))
	})
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second}
	log.Printf("webhook-sink listening on http://%s", *addr)
	if err := srv.ListenAndServe(); err != nil {
		log.Fatalf("webhook-sink: %v (is %s in use? choose another with --listen)", err, *addr)
	}
}
