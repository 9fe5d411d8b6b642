package evaluate

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/infer"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Question is one multiple-choice question.
type Question struct {
	// Source is "file:line" (the file as the stage names it).
	Source   string
	Question string
	Choices  []string
	// Answer is the index of the right choice.
	Answer int
}

// maxChoices is the number of choice letters, A to Z.
const maxChoices = 26

// Letter returns the letter of choice i ("A" for 0).
func Letter(i int) string { return string(rune('A' + i)) }

// Prompt is the question as the user turn: LLaMA Factory's English MMLU
// layout, "{question}\nA. {A}\nB. {B}...\nAnswer:".
func (q Question) Prompt() string {
	var sb strings.Builder
	sb.WriteString(q.Question)
	for i, c := range q.Choices {
		sb.WriteString("\n" + Letter(i) + ". " + c)
	}
	sb.WriteString("\nAnswer:")
	return sb.String()
}

// ReadQuestions reads a multiple-choice file: a JSON array of objects,
// JSONL (one object a line; also a .json file that does not start with
// '['), or a headerless MMLU CSV (question, choices..., answer letter).
// name is the file as messages should name it.
func ReadQuestions(path, name string) ([]Question, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("choices: %w", err)
	}
	b = bytes.TrimPrefix(b, []byte("\uFEFF"))
	var qs []Question
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".json":
		if t := bytes.TrimLeft(b, " \t\r\n"); len(t) > 0 && t[0] == '[' {
			qs, err = readJSONArray(b, name)
		} else {
			qs, err = readJSONL(b, name)
		}
	case ".jsonl", ".ndjson":
		qs, err = readJSONL(b, name)
	case ".csv":
		qs, err = readCSV(b, name)
	default:
		return nil, fmt.Errorf("choices: %s: unsupported file type %q (want .json, .jsonl or .csv)", name, ext)
	}
	if err != nil {
		return nil, fmt.Errorf("choices: %w", err)
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("choices: %s: no questions", name)
	}
	return qs, nil
}

func lineAt(b []byte, off int) int { return 1 + bytes.Count(b[:min(off, len(b))], []byte("\n")) }

func jsonMessage(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "invalid JSON: " + se.Error()
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want a JSON object, got a JSON %s", te.Value)
	}
	return "invalid JSON: " + err.Error()
}

func readJSONArray(b []byte, name string) ([]Question, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s:1: %s", name, jsonMessage(err))
	}
	var qs []Question
	for dec.More() {
		// The element starts at the first byte after the offset that is
		// neither white space nor the separating comma.
		start := int(dec.InputOffset())
		for start < len(b) && strings.IndexByte(" \t\r\n,", b[start]) >= 0 {
			start++
		}
		line := lineAt(b, start)
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			if se := (*json.SyntaxError)(nil); errors.As(err, &se) {
				line = lineAt(b, int(se.Offset))
			}
			return nil, fmt.Errorf("%s:%d: element %d: %s", name, line, len(qs), jsonMessage(err))
		}
		q, err := parseRow(row)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		q.Source = fmt.Sprintf("%s:%d", name, line)
		qs = append(qs, q)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%s:%d: %s", name, lineAt(b, int(dec.InputOffset())), jsonMessage(err))
	}
	return qs, nil
}

func readJSONL(b []byte, name string) ([]Question, error) {
	var qs []Question
	for i, ln := range bytes.Split(b, []byte("\n")) {
		ln = bytes.TrimSpace(ln)
		if len(ln) == 0 {
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(ln))
		dec.UseNumber()
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			return nil, fmt.Errorf("%s:%d: %s", name, i+1, jsonMessage(err))
		}
		if dec.More() {
			return nil, fmt.Errorf("%s:%d: more than one JSON value on the line", name, i+1)
		}
		if row == nil {
			return nil, fmt.Errorf("%s:%d: want a JSON object, got null", name, i+1)
		}
		q, err := parseRow(row)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		q.Source = fmt.Sprintf("%s:%d", name, i+1)
		qs = append(qs, q)
	}
	return qs, nil
}

func readCSV(b []byte, name string) ([]Question, error) {
	r := csv.NewReader(bytes.NewReader(b))
	r.FieldsPerRecord = -1
	var qs []Question
	for first := true; ; first = false {
		rec, err := r.Read()
		if err == io.EOF {
			return qs, nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, fmt.Errorf("%s:%d: invalid CSV: %v", name, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := r.FieldPos(0)
		if first && len(rec) >= 2 && strings.EqualFold(strings.TrimSpace(rec[0]), "question") && strings.EqualFold(strings.TrimSpace(rec[len(rec)-1]), "answer") {
			continue // a header row
		}
		if len(rec) < 4 {
			return nil, fmt.Errorf("%s:%d: %d columns; want question, at least two choices and the answer letter (MMLU: question,A,B,C,D,answer)", name, line, len(rec))
		}
		q := Question{Source: fmt.Sprintf("%s:%d", name, line), Question: rec[0], Choices: append([]string(nil), rec[1:len(rec)-1]...)}
		if err := checkQuestion(&q); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		if q.Answer, err = letterAnswer(rec[len(rec)-1], len(q.Choices)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		qs = append(qs, q)
	}
}

// text accepts a JSON string, or a number as its text.
func text(v any, what string) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case nil:
		return "", fmt.Errorf("%s is null", what)
	}
	return "", fmt.Errorf("%s is a JSON %s, want a string", what, jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		return "number"
	}
	return "value"
}

func parseRow(row map[string]any) (Question, error) {
	var q Question
	qv, ok := row["question"]
	if !ok {
		return q, errors.New(`the row has no "question"`)
	}
	var err error
	if q.Question, err = text(qv, `"question"`); err != nil {
		return q, err
	}
	list, hasList := row["choices"]
	if hasList {
		items, ok := list.([]any)
		if !ok {
			return q, fmt.Errorf(`"choices" is a JSON %s, want an array of strings`, jsonKind(list))
		}
		if _, ok := row["A"]; ok {
			return q, errors.New(`the row has both "choices" and "A"; give the choices one way`)
		}
		for i, it := range items {
			s, err := text(it, fmt.Sprintf(`"choices"[%d]`, i))
			if err != nil {
				return q, err
			}
			q.Choices = append(q.Choices, s)
		}
	} else {
		for i := range maxChoices {
			v, ok := row[Letter(i)]
			if !ok {
				break
			}
			s, err := text(v, fmt.Sprintf("%q", Letter(i)))
			if err != nil {
				return q, err
			}
			q.Choices = append(q.Choices, s)
		}
		if len(q.Choices) == 0 {
			return q, errors.New(`the row has neither "choices" nor choice keys "A", "B", ...`)
		}
		if n := len(q.Choices); n < maxChoices {
			for i := n + 1; i < maxChoices; i++ {
				if _, ok := row[Letter(i)]; ok {
					return q, fmt.Errorf("the row has choice %q but no %q; choice keys run A, B, C, ... without gaps", Letter(i), Letter(n))
				}
			}
		}
	}
	if err := checkQuestion(&q); err != nil {
		return q, err
	}
	av, ok := row["answer"]
	if !ok {
		return q, errors.New(`the row has no "answer"`)
	}
	switch a := av.(type) {
	case string:
		q.Answer, err = letterAnswer(a, len(q.Choices))
	case json.Number:
		i, ierr := a.Int64()
		switch {
		case ierr != nil:
			err = fmt.Errorf(`"answer" %s is not a whole number; want a letter ("B") or a 0-based index (1)`, a)
		case i < 0 || i >= int64(len(q.Choices)):
			err = fmt.Errorf(`"answer" %d is outside the %d choices (a 0-based index: 0 to %d)`, i, len(q.Choices), len(q.Choices)-1)
		default:
			q.Answer = int(i)
		}
	default:
		err = fmt.Errorf(`"answer" is a JSON %s; want a letter ("B") or a 0-based index (1)`, jsonKind(av))
	}
	return q, err
}

func checkQuestion(q *Question) error {
	if strings.TrimSpace(q.Question) == "" {
		return errors.New("the question is empty")
	}
	switch n := len(q.Choices); {
	case n < 2:
		return fmt.Errorf("%d choice; a question needs at least two", n)
	case n > maxChoices:
		return fmt.Errorf("%d choices; at most %d (A to Z)", n, maxChoices)
	}
	return nil
}

func letterAnswer(s string, n int) (int, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if len(t) != 1 || t[0] < 'A' || t[0] > 'Z' {
		return 0, fmt.Errorf("answer %q is not a choice letter (A to %s)", s, Letter(n-1))
	}
	i := int(t[0] - 'A')
	if i >= n {
		return 0, fmt.Errorf("answer %q but the question has %d choices (A to %s)", s, n, Letter(n-1))
	}
	return i, nil
}

// ChoicePrediction is one question's outcome (a line of
// mc_predictions.jsonl).
type ChoicePrediction struct {
	Source  string `json:"source"`
	Answer  string `json:"answer"`
	Predict string `json:"predict"`
	Correct bool   `json:"correct"`
	// LogLik is each choice letter's log-likelihood as the answer.
	LogLik []float64 `json:"loglik"`
}

// ChoiceTurns renders a question with its k-shot examples as a
// conversation: each shot a user turn (its Prompt) and an assistant turn
// (its answer letter), then the question as the last user turn.
func ChoiceTurns(q Question, shots []Question) []data.Message {
	var turns []data.Message
	for _, s := range shots {
		turns = append(turns,
			data.Message{Role: data.RoleUser, Content: s.Prompt()},
			data.Message{Role: data.RoleAssistant, Content: Letter(s.Answer)})
	}
	return append(turns, data.Message{Role: data.RoleUser, Content: q.Prompt()})
}

// ChoiceBatch builds the batch that scores a question's choices: row i is
// the prompt followed by the tokens of choice i's letter, with targets on
// the letter's tokens only. letters[i] are the letter's token ids.
func ChoiceBatch(prompt []int32, letters [][]int32) *llama.Batch {
	longest := 0
	for _, l := range letters {
		longest = max(longest, len(l))
	}
	B, T := len(letters), len(prompt)+longest
	b := &llama.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	for r, l := range letters {
		row := b.Tokens[r*T : (r+1)*T]
		copy(row, prompt)
		copy(row[len(prompt):], l)
		tg := b.Targets[r*T : (r+1)*T]
		for t := range tg {
			tg[t] = -1
		}
		for j, id := range l {
			tg[len(prompt)-1+j] = id
		}
	}
	return b
}

// ScoreChoices answers each question with the choice whose letter is the
// most likely answer (see the package comment) and returns the
// predictions and the accuracy.
func ScoreChoices(ctx context.Context, e *infer.Engine, qs, shots []Question, system string, rep stage.Reporter) ([]ChoicePrediction, float64, error) {
	letterIDs := make([][]int32, maxChoices)
	for i := range letterIDs {
		for _, id := range e.Tok.Encode(Letter(i), false) {
			letterIDs[i] = append(letterIDs[i], int32(id))
		}
		if len(letterIDs[i]) == 0 {
			return nil, 0, fmt.Errorf("choices: the tokenizer encodes the letter %q to no tokens", Letter(i))
		}
	}
	maxPos := e.Model.Cfg.MaxPositions
	preds := make([]ChoicePrediction, len(qs))
	correct := 0
	for qi, q := range qs {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		prompt, err := e.PromptIDs(system, ChoiceTurns(q, shots))
		if err != nil {
			return nil, 0, fmt.Errorf("choices: %s: %w", q.Source, err)
		}
		b := ChoiceBatch(prompt, letterIDs[:len(q.Choices)])
		if maxPos > 0 && b.T > maxPos {
			return nil, 0, fmt.Errorf("choices: %s: the prompt and answer take %d tokens, the model's context is %d (use fewer k_shot examples or shorter questions)", q.Source, b.T, maxPos)
		}
		losses, err := e.Model.TokenLosses(b)
		if err != nil {
			return nil, 0, fmt.Errorf("choices: %s: %w", q.Source, err)
		}
		ll := make([]float64, len(q.Choices))
		best := 0
		for r := range ll {
			for t := r * b.T; t < (r+1)*b.T; t++ {
				if b.Targets[t] >= 0 {
					ll[r] -= float64(losses[t])
				}
			}
			if ll[r] > ll[best] {
				best = r
			}
		}
		for _, v := range ll {
			if math.IsNaN(v) {
				return nil, 0, fmt.Errorf("choices: %s: the model's log-likelihoods are not numbers", q.Source)
			}
		}
		p := ChoicePrediction{Source: q.Source, Answer: Letter(q.Answer), Predict: Letter(best), Correct: best == q.Answer, LogLik: ll}
		if p.Correct {
			correct++
		}
		preds[qi] = p
		rep.Progress(int64(qi+1), int64(len(qs)), "question")
	}
	return preds, float64(correct) / float64(len(qs)), nil
}
