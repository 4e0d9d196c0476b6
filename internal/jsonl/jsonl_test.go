package jsonl

import (
	"errors"
	"strings"
	"testing"
)

// TestEach: lines over the cap are refused with their numbers and the
// lines after them still come; endings are dropped; a last line without
// an ending counts.
func TestEach(t *testing.T) {
	type got struct {
		n    int
		line string
		long int64
	}
	for _, tt := range []struct {
		name, in string
		max      int
		want     []got
	}{
		{"short", "a\nbb\r\n\nccc", 4, []got{{1, "a", 0}, {2, "bb", 0}, {3, "", 0}, {4, "ccc", 0}}},
		{"at the cap", "abcd\nabcd\r\nabcd", 4, []got{{1, "abcd", 0}, {2, "abcd", 0}, {3, "abcd", 0}}},
		{"over the cap", "abcde\nx\nabcdef\r\nabcdefg", 4, []got{{1, "", 5}, {2, "x", 0}, {3, "", 7}, {4, "", 7}}},
		// over the reader's 64 KiB buffer: read in fragments
		{"over the buffer", "a\n" + strings.Repeat("z", 200<<10) + "\nb\n", 100 << 10, []got{{1, "a", 0}, {2, "", 200 << 10}, {3, "b", 0}}},
		{"long, kept", strings.Repeat("z", 100<<10) + "\n", 100 << 10, []got{{1, strings.Repeat("z", 100<<10), 0}}},
		{"empty", "", 4, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var lines []got
			err := Each(strings.NewReader(tt.in), tt.max, func(n int, line []byte, err error) {
				g := got{n: n, line: string(line)}
				var tl *TooLongError
				if errors.As(err, &tl) {
					if tl.Line != n || tl.Max != tt.max {
						t.Errorf("line %d: %+v", n, tl)
					}
					g.long = tl.Len
				} else if err != nil {
					t.Errorf("line %d: %v", n, err)
				}
				lines = append(lines, g)
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines, want %d: %v", len(lines), len(tt.want), lines)
			}
			for i := range lines {
				if lines[i] != tt.want[i] {
					t.Errorf("line %d: %+v, want %+v", i+1, lines[i], tt.want[i])
				}
			}
		})
	}
	e := &TooLongError{Line: 2, Len: 17 << 20, Max: 16 << 20}
	if !strings.Contains(e.Error(), "17825792 bytes") || !strings.Contains(e.Error(), "16 MiB") {
		t.Errorf("error %q does not say the length and the cap", e)
	}
}
