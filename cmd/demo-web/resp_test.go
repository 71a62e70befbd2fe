package main

import (
	"bufio"
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want any
		err  string
	}{
		{name: "simple string", in: "+OK\r\n", want: "OK"},
		{name: "error reply", in: "-ERR wrong type\r\n", want: redisError("ERR wrong type")},
		{name: "integer", in: ":42\r\n", want: int64(42)},
		{name: "negative integer", in: ":-7\r\n", want: int64(-7)},
		{name: "bulk", in: "$5\r\nhello\r\n", want: "hello"},
		{name: "bulk with CRLF inside", in: "$4\r\na\r\nb\r\n", want: "a\r\nb"},
		{name: "empty bulk", in: "$0\r\n\r\n", want: ""},
		{name: "null bulk", in: "$-1\r\n", want: nil},
		{name: "array", in: "*2\r\n$1\r\na\r\n:1\r\n", want: []any{"a", int64(1)}},
		{name: "empty array", in: "*0\r\n", want: []any{}},
		{name: "null array", in: "*-1\r\n", want: nil},
		{name: "nested array", in: "*1\r\n*1\r\n+x\r\n", want: []any{[]any{"x"}}},
		{name: "bare LF", in: "+OK\n", err: "not terminated by CRLF"},
		{name: "unknown type", in: "!x\r\n", err: "unknown reply type"},
		{name: "empty line", in: "\r\n", err: "empty reply line"},
		{name: "bad integer", in: ":4x\r\n", err: "bad integer"},
		{name: "bulk too long", in: "$99999999\r\n", err: "bad bulk length"},
		{name: "bulk length below -1", in: "$-2\r\n", err: "bad bulk length"},
		{name: "bulk shorter than said", in: "$5\r\nhi\r\n", err: "short bulk"},
		{name: "bulk without CRLF", in: "$2\r\nhixx", err: "not terminated by CRLF"},
		{name: "array too long", in: "*99999999\r\n", err: "bad array length"},
		{name: "array cut short", in: "*2\r\n+a\r\n", err: "EOF"},
		{name: "too deep", in: strings.Repeat("*1\r\n", 20) + "+x\r\n", err: "nested too deep"},
		{name: "nothing", in: "", err: "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readReply(bufio.NewReader(strings.NewReader(tt.in)))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("readReply(%q) = %#v, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readReply(%q) = %#v, %v; want %#v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestWriteCommand(t *testing.T) {
	var b bytes.Buffer
	if err := writeCommand(bufio.NewWriter(&b), "LPUSH", "k", "two\r\nlines", ""); err != nil {
		t.Fatal(err)
	}
	want := "*4\r\n$5\r\nLPUSH\r\n$1\r\nk\r\n$10\r\ntwo\r\nlines\r\n$0\r\n\r\n"
	if b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	// What we write, read back as a reply, gives the arguments again.
	got, err := readReply(bufio.NewReader(&b))
	if err != nil || !reflect.DeepEqual(got, []any{"LPUSH", "k", "two\r\nlines", ""}) {
		t.Fatalf("round trip: %#v, %v", got, err)
	}
}

// FuzzReadReply: no input makes the parser panic, hang or allocate past its limits,
// and whatever it accepts it accepts from a reader of any buffer size.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*2\r\n:1\r\n*1\r\n$0\r\n\r\n", "*-1\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v1, err1 := readReply(bufio.NewReader(bytes.NewReader(in)))
		v2, err2 := readReply(bufio.NewReaderSize(bytes.NewReader(in), 16))
		if (err1 == nil) != (err2 == nil) || (err1 == nil && !reflect.DeepEqual(v1, v2)) {
			t.Fatalf("buffer size changes the result: %#v %v vs %#v %v", v1, err1, v2, err2)
		}
	})
}
