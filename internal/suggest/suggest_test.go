package suggest

import "testing"

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"run", "rnu", 1}, {"chatlm", "chatml", 1}, {"ca", "abc", 3},
		{"모델", "모댈", 1}, {"same", "same", 0},
	}
	for _, tc := range tests {
		if got := Distance(tc.a, tc.b); got != tc.want {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestClosest(t *testing.T) {
	cands := []string{"plan", "run", "validate", "learning_rate"}
	tests := []struct{ name, want string }{
		{"rnu", "run"},
		{"pln", "plan"},
		{"validat", "validate"},
		{"lerning_rat", "learning_rate"},
		{"zzzzzz", ""},
	}
	for _, tc := range tests {
		if got := Closest(tc.name, cands); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}
