package hub

import "testing"

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.safetensors", "model.safetensors", true},
		{"*.safetensors", "sub/model-00001-of-00002.safetensors", true}, // '*' crosses '/' as in fnmatch
		{"*.safetensors", "model.safetensors.index.json", false},
		{"tokenizer*", "tokenizer.json", true},
		{"tokenizer*", "tokenizer_config.json", true},
		{"tokenizer*", "sub/tokenizer.json", false},
		{"data/**", "data/train/part-0.parquet", true},
		{"data/**", "data", false},
		{"data/", "data/x.json", true},
		{"data/", "datax/x.json", false},
		{"model-0000?-of-00002.safetensors", "model-00001-of-00002.safetensors", true},
		{"model-0000?-of-00002.safetensors", "model-001-of-00002.safetensors", false},
		{"[ab]*.txt", "b.txt", true},
		{"[!ab]*.txt", "b.txt", false},
		{"[!ab]*.txt", "c.txt", true},
		{"shard-[0-3].bin", "shard-2.bin", true},
		{"shard-[0-3].bin", "shard-7.bin", false},
		{"[oops", "[oops", true},
		{"*", "", true},
		{"", "", true},
		{"", "a", false},
		{"*.JSON", "config.json", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
	} {
		if got := Match(tc.pattern, tc.name); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}

func TestSelected(t *testing.T) {
	files := []string{"config.json", "model.safetensors", "tokenizer.json", "original/consolidated.pth", "README.md"}
	for _, tc := range []struct {
		include, exclude []string
		want             int
	}{
		{nil, nil, 5},
		{[]string{"*.json", "*.safetensors"}, nil, 3},
		{nil, []string{"original/*", "*.md"}, 3},
		{[]string{"*.json"}, []string{"tokenizer*"}, 1},
	} {
		if got := Filter(files, tc.include, tc.exclude); len(got) != tc.want {
			t.Errorf("Filter(%q, %q) = %q, want %d files", tc.include, tc.exclude, got, tc.want)
		}
	}
}
