// Package jsonl reads newline-delimited records (JSON lines) of bounded
// length without stopping at the first one over the bound: every line is
// either handed over or refused with its number.
package jsonl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// TooLongError is a line over the cap: it was read to its end and dropped.
// Its message says its length and the cap; the caller says where it was.
type TooLongError struct {
	Line int   // its number, from 1
	Len  int64 // its length in bytes, its ending not counted
	Max  int   // the cap
}

func (e *TooLongError) Error() string {
	return fmt.Sprintf("jsonl: a line of %d bytes, over the cap of %s", e.Len, size(e.Max))
}

func size(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Each calls fn with each line of r, its number (from 1) and its bytes
// without the line ending ("\n" or "\r\n"); the bytes are valid until fn
// returns. A line of more than max bytes is read to its end but not kept:
// fn gets a *TooLongError for it instead, and reading goes on. Each
// returns the first read error other than io.EOF.
func Each(r io.Reader, max int, fn func(n int, line []byte, err error)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for n := 1; ; n++ {
		// the line's fragments, kept while they fit (with room for "\r\n")
		line = line[:0]
		var total int64
		var err error
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			total += int64(len(frag))
			if total <= int64(max)+2 {
				line = append(line, frag...)
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if total == 0 { // err is set: the end, or a read error
			return eof(err)
		}
		if body := trimEnding(line); total <= int64(max)+2 && len(body) <= max {
			fn(n, body, nil)
		} else {
			long := total
			if err == nil {
				long-- // its "\n"
			}
			fn(n, nil, &TooLongError{Line: n, Len: long, Max: max})
		}
		if err != nil {
			return eof(err)
		}
	}
}

func trimEnding(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
