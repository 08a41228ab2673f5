package wire

// This file is how a CloudEvents attribute value is written into, and read
// from, a "ce-" NATS header, as the CloudEvents NATS protocol binding
// (1.0.3, section 3.1.3.2) says:
//
//   - writing, a space, '"', '%', and every byte outside the printable
//     US-ASCII range U+0021-U+007E (control characters and the UTF-8 bytes of
//     non-ASCII characters) is percent-encoded as %XY with upper-case hex;
//     nothing else is touched, so ids, types, sources and times are written
//     as they are;
//   - reading, a value in double quotes is first unquoted (RFC 7230
//     quoted-string, backslash escapes included), then one round of
//     percent-decoding is done; lower-case hex is accepted, and a result
//     that is not valid UTF-8 (such as the overlong %C0%A0) is refused.
//
// The CloudEvents Go SDK's NATS JetStream bindings (nats_jetstream v2 and
// v3) neither encode nor decode: they write the raw string and read the
// header as it is (its core protocol/nats binding is structured mode only). Reading what they write, a '%' that does not start
// two hex digits is therefore kept as it is, and raw non-ASCII UTF-8 is
// accepted; docs/protocol.md says what crosses between the two exactly.

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

const upperHex = "0123456789ABCDEF"

// escapeByte reports whether b must be percent-encoded in a ce- header value.
func escapeByte(b byte) bool {
	return b <= ' ' || b == '"' || b == '%' || b >= 0x7f
}

// EncodeHeaderValue percent-encodes an attribute's canonical string for a
// ce- header (see the file comment). A string that needs no encoding is
// returned as it is, without allocating; one that is not valid UTF-8 is
// refused (the decoding side would refuse it too).
func EncodeHeaderValue(s string) (string, error) {
	i := 0
	for i < len(s) && !escapeByte(s[i]) {
		i++
	}
	if i == len(s) {
		return s, nil
	}
	if !utf8.ValidString(s[i:]) {
		return "", fmt.Errorf("value %q is not valid UTF-8", s)
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if escapeByte(c) {
			b.WriteByte('%')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0x0f])
			continue
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// DecodeHeaderValue reads an attribute's string from a ce- header value
// (see the file comment). A value with no quotes and no '%' is returned as
// it is, without allocating.
func DecodeHeaderValue(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		u, err := unquote(v)
		if err != nil {
			return "", err
		}
		v = u
	}
	pct := strings.IndexByte(v, '%')
	if pct < 0 {
		if !utf8.ValidString(v) {
			return "", fmt.Errorf("value %q is not valid UTF-8", v)
		}
		return v, nil
	}
	var b strings.Builder
	b.Grow(len(v))
	b.WriteString(v[:pct])
	for i := pct; i < len(v); i++ {
		c := v[i]
		if c == '%' && i+2 < len(v) {
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		// A '%' that starts no escape: a raw value (the CloudEvents Go
		// SDK's bindings do not encode), kept as it is.
		b.WriteByte(c)
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", fmt.Errorf("value %q percent-decodes to invalid UTF-8", v)
	}
	return out, nil
}

// unquote reads an RFC 7230 quoted-string: the quotes go, and a backslash
// takes the next byte literally.
func unquote(v string) (string, error) {
	in := v[1 : len(v)-1]
	if strings.IndexByte(in, '\\') < 0 {
		if strings.IndexByte(in, '"') >= 0 {
			return "", fmt.Errorf("quoted value %s has an unescaped '\"' inside", v)
		}
		return in, nil
	}
	var b strings.Builder
	b.Grow(len(in))
	for i := 0; i < len(in); i++ {
		c := in[i]
		switch c {
		case '\\':
			if i+1 == len(in) {
				return "", fmt.Errorf("quoted value %s ends in a lone backslash", v)
			}
			i++
			b.WriteByte(in[i])
		case '"':
			return "", fmt.Errorf("quoted value %s has an unescaped '\"' inside", v)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
