package broker

import (
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/plugbus/plugbus/wire"
)

// withRedelivery adds the consumer's redelivery subjects
// (wire.RedeliverySubjects) to its filters, so a dead letter replayed to
// it reaches it and no other plugin. A type filter that already overlaps
// them (a pattern of * tokens as long as a redelivery subject) is left
// alone: JetStream refuses overlapping filters, and that filter takes the
// redeliveries it matches anyway.
func withRedelivery(prefix string, cc *jetstream.ConsumerConfig) {
	re := wire.RedeliverySubjects(prefix, cc.Durable)
	for _, f := range cc.FilterSubjects {
		if subjectsOverlap(f, re) {
			return
		}
	}
	if cc.FilterSubject != "" && subjectsOverlap(cc.FilterSubject, re) {
		return
	}
	cc.FilterSubjects = append(cc.FilterSubjects, re)
}

// subjectsOverlap reports whether some subject matches both filters a
// and b.
func subjectsOverlap(a, b string) bool {
	at, bt := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; ; i++ {
		switch {
		case i == len(at) && i == len(bt):
			return true
		case i == len(at) || i == len(bt):
			return false
		case at[i] == ">" || bt[i] == ">":
			return true
		case at[i] != bt[i] && at[i] != "*" && bt[i] != "*":
			return false
		}
	}
}

// filtersMatch reports whether subject (no wildcards) matches one of the
// filters.
func filtersMatch(filters []string, subject string) bool {
	for _, f := range filters {
		if f != "" && subjectsOverlap(f, subject) {
			return true
		}
	}
	return false
}
