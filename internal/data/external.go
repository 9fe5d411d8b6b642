package data

// RenderFunc renders a conversation (turns already checked to alternate
// user and assistant, starting with user) into Segments with Text, Answer,
// Special and Turn set; Template.Render then sets Train from Answer, Turn
// and the options. Its segments must join to the full rendering.
type RenderFunc func(system string, turns []Message, opt RenderOptions) ([]Segment, error)

// NewTemplate wraps a renderer defined outside this package (such as the
// model's own Jinja chat template, internal/chattemplate) as a Template, so
// that Build, truncation and masking treat it like a built-in one. It has
// no default system prompt; stopWords is the end-of-turn text generation
// stops at.
func NewTemplate(name string, stopWords []string, render RenderFunc) *Template {
	return &Template{Name: name, StopWords: stopWords, external: render}
}
