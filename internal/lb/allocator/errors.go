package allocator

import "errors"

// Reason is why a Service has no (or not all of its) addresses, in the
// CamelCase form a Kubernetes condition's reason takes.
type Reason string

const (
	ReasonPoolExhausted          Reason = "PoolExhausted"
	ReasonRequestedIPTaken       Reason = "RequestedIPTaken"
	ReasonRequestedIPOutsidePool Reason = "RequestedIPOutsidePools"
	ReasonSharingConflict        Reason = "SharingConflict"
	ReasonNoPoolForService       Reason = "NoPoolForService"
	ReasonFamilyUnavailable      Reason = "FamilyUnavailable"
	ReasonInvalidService         Reason = "InvalidService"
)

// Error is returned by Assign and Restore. Message is a sentence for the
// Service's Event and condition; Reason is its condition reason.
type Error struct {
	Reason  Reason
	Service string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "allocator: " + string(e.Reason)
	}
	return "allocator: " + e.Service + ": " + e.Message
}

// Is makes errors.Is(err, ErrPoolExhausted) and friends match on Reason.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Service == "" && t.Reason == e.Reason
}

// Sentinels for errors.Is; the returned errors carry a Service and Message.
var (
	ErrPoolExhausted           = &Error{Reason: ReasonPoolExhausted}
	ErrRequestedIPTaken        = &Error{Reason: ReasonRequestedIPTaken}
	ErrRequestedIPOutsidePools = &Error{Reason: ReasonRequestedIPOutsidePool}
	ErrSharingConflict         = &Error{Reason: ReasonSharingConflict}
	ErrNoPoolForService        = &Error{Reason: ReasonNoPoolForService}
	ErrFamilyUnavailable       = &Error{Reason: ReasonFamilyUnavailable}
	ErrInvalidService          = &Error{Reason: ReasonInvalidService}
)

// ReasonOf returns the Reason of an allocator error anywhere in err's chain.
func ReasonOf(err error) (Reason, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, true
	}
	return "", false
}

func IsPoolExhausted(err error) bool           { return errors.Is(err, ErrPoolExhausted) }
func IsRequestedIPTaken(err error) bool        { return errors.Is(err, ErrRequestedIPTaken) }
func IsRequestedIPOutsidePools(err error) bool { return errors.Is(err, ErrRequestedIPOutsidePools) }
func IsSharingConflict(err error) bool         { return errors.Is(err, ErrSharingConflict) }
func IsNoPoolForService(err error) bool        { return errors.Is(err, ErrNoPoolForService) }
func IsFamilyUnavailable(err error) bool       { return errors.Is(err, ErrFamilyUnavailable) }
func IsInvalidService(err error) bool          { return errors.Is(err, ErrInvalidService) }
