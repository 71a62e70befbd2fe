package allocator

import (
	"strings"
	"testing"
)

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "gold"}
	for _, tc := range []struct {
		name string
		sel  *Selector
		want bool
	}{
		{"nil matches all", nil, true},
		{"empty matches all", &Selector{}, true},
		{"matchLabels hit", &Selector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"matchLabels wrong value", &Selector{MatchLabels: map[string]string{"app": "db"}}, false},
		{"matchLabels missing key", &Selector{MatchLabels: map[string]string{"team": "a"}}, false},
		{"In hit", &Selector{MatchExpressions: []Requirement{{"tier", In, []string{"silver", "gold"}}}}, true},
		{"In miss", &Selector{MatchExpressions: []Requirement{{"tier", In, []string{"silver"}}}}, false},
		{"In missing key", &Selector{MatchExpressions: []Requirement{{"zone", In, []string{"a"}}}}, false},
		{"NotIn hit", &Selector{MatchExpressions: []Requirement{{"tier", NotIn, []string{"gold"}}}}, false},
		{"NotIn missing key matches", &Selector{MatchExpressions: []Requirement{{"zone", NotIn, []string{"a"}}}}, true},
		{"Exists", &Selector{MatchExpressions: []Requirement{{"app", Exists, nil}}}, true},
		{"Exists missing", &Selector{MatchExpressions: []Requirement{{"zone", Exists, nil}}}, false},
		{"DoesNotExist", &Selector{MatchExpressions: []Requirement{{"zone", DoesNotExist, nil}}}, true},
		{"DoesNotExist present", &Selector{MatchExpressions: []Requirement{{"app", DoesNotExist, nil}}}, false},
		{"all ANDed", &Selector{MatchLabels: map[string]string{"app": "web"}, MatchExpressions: []Requirement{{"tier", In, []string{"silver"}}}}, false},
		{"unknown operator never matches", &Selector{MatchExpressions: []Requirement{{"app", "Gt", []string{"1"}}}}, false},
	} {
		if got := tc.sel.Matches(labels); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSelectorValidateAndString(t *testing.T) {
	s := &Selector{
		MatchLabels: map[string]string{"b": "2", "a": "1"},
		MatchExpressions: []Requirement{
			{"tier", In, []string{"x", "y"}}, {"env", NotIn, []string{"dev"}}, {"team", Exists, nil}, {"legacy", DoesNotExist, nil},
		},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "a=1,b=2,tier in (x,y),env notin (dev),team,!legacy"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	bad := &Selector{
		MatchLabels: map[string]string{"": "x"},
		MatchExpressions: []Requirement{
			{"", Exists, nil}, {"a", In, nil}, {"b", Exists, []string{"v"}}, {"c", "Gt", []string{"1"}},
		},
	}
	err := bad.Validate()
	for _, want := range []string{"matchLabels has an empty key", "matchExpressions[0]: empty key",
		"matchExpressions[1]: In needs at least one value", "matchExpressions[2]: Exists takes no values",
		`matchExpressions[3]: unknown operator "Gt"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to say %q", err, want)
		}
	}
}
