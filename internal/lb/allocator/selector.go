package allocator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Operator is a label selector operator, spelled as in the Kubernetes API.
type Operator string

const (
	In           Operator = "In"
	NotIn        Operator = "NotIn"
	Exists       Operator = "Exists"
	DoesNotExist Operator = "DoesNotExist"
)

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string
	Operator Operator
	Values   []string
}

// Selector is a Kubernetes label selector (matchLabels and matchExpressions,
// all ANDed) with the API's semantics: an empty selector matches everything and
// NotIn matches a missing key. A nil *Selector also matches everything.
type Selector struct {
	MatchLabels      map[string]string
	MatchExpressions []Requirement
}

// Matches reports whether labels satisfy s.
func (s *Selector) Matches(labels map[string]string) bool {
	if s == nil {
		return true
	}
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case In:
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case NotIn:
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case Exists:
			if !ok {
				return false
			}
		case DoesNotExist:
			if ok {
				return false
			}
		default:
			return false // Validate refuses these; never match by accident
		}
	}
	return true
}

// IsEmpty reports whether s has no requirement (and so matches everything).
func (s *Selector) IsEmpty() bool {
	return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
}

// Validate reports requirements that cannot be evaluated.
func (s *Selector) Validate() error {
	if s == nil {
		return nil
	}
	var errs []error
	for k := range s.MatchLabels {
		if k == "" {
			errs = append(errs, errors.New("matchLabels has an empty key"))
		}
	}
	for i, r := range s.MatchExpressions {
		if r.Key == "" {
			errs = append(errs, fmt.Errorf("matchExpressions[%d]: empty key", i))
		}
		switch r.Operator {
		case In, NotIn:
			if len(r.Values) == 0 {
				errs = append(errs, fmt.Errorf("matchExpressions[%d]: %s needs at least one value", i, r.Operator))
			}
		case Exists, DoesNotExist:
			if len(r.Values) != 0 {
				errs = append(errs, fmt.Errorf("matchExpressions[%d]: %s takes no values", i, r.Operator))
			}
		default:
			errs = append(errs, fmt.Errorf("matchExpressions[%d]: unknown operator %q", i, r.Operator))
		}
	}
	return errors.Join(errs...)
}

// String renders s in kubectl's selector syntax, "app=web,tier in (a,b),!legacy",
// with keys sorted so messages are stable.
func (s *Selector) String() string {
	if s.IsEmpty() {
		return "(everything)"
	}
	var parts []string
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, k+"="+s.MatchLabels[k])
	}
	for _, r := range s.MatchExpressions {
		switch r.Operator {
		case In:
			parts = append(parts, fmt.Sprintf("%s in (%s)", r.Key, strings.Join(r.Values, ",")))
		case NotIn:
			parts = append(parts, fmt.Sprintf("%s notin (%s)", r.Key, strings.Join(r.Values, ",")))
		case Exists:
			parts = append(parts, r.Key)
		case DoesNotExist:
			parts = append(parts, "!"+r.Key)
		default:
			parts = append(parts, fmt.Sprintf("%s %s (%s)", r.Key, r.Operator, strings.Join(r.Values, ",")))
		}
	}
	return strings.Join(parts, ",")
}
