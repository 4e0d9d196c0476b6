package methanemap

import (
	"errors"
	"fmt"
	"strings"
)

// PermanentError marks a failure that retrying cannot fix: a malformed
// message, a missing or unreadable raster, a wrong CRS. The worker terminates
// such scenes with a dead letter instead of redelivering them; the CLI exits
// with code 2. Errors without the marker are treated as transient.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err in a PermanentError. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Permanentf formats an error and marks it permanent.
func Permanentf(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err, or any error it wraps, is marked permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// FieldError is one problem with one field of a message or file. Field is a
// dotted path such as "assets.s2.hrefs.B04".
type FieldError struct {
	Field string
	Msg   string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidationError lists every problem found in one message. It is permanent.
type ValidationError struct {
	Source   string // file name or message id, when known
	Problems []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Is makes every ValidationError satisfy errors.Is(err, ErrInvalid).
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// ErrInvalid is matched by every ValidationError.
var ErrInvalid = errors.New("methanemap: invalid message")

func (v *ValidationError) add(field, format string, args ...any) {
	v.Problems = append(v.Problems, FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// err returns v wrapped as permanent when it holds problems, else nil.
func (v *ValidationError) err() error {
	if len(v.Problems) == 0 {
		return nil
	}
	return Permanent(v)
}
