// Package align computes the preference and reward losses of lathe's
// alignment stages on per-sequence scores: DPO (sigmoid, with optional label
// smoothing as in cDPO), IPO, hinge, ORPO and SimPO, plus the pairwise
// Bradley–Terry loss of reward-model training.
//
// The training engine reduces every sequence to a LogProb: the SUM of the
// log-probabilities of its response tokens and how many tokens there are.
// DPO turns a batch of such pairs (policy and, where the loss needs it,
// reference) into the batch loss, the gradient of that loss with respect to
// each policy Sum, and the metrics that LLaMA Factory logs (rewards, reward
// accuracy, reward margin). Because every response token's log-probability
// enters its sequence's Sum with coefficient one, the gradient of the loss
// with respect to a token's log-probability is the sequence's D value; the
// engine multiplies that token's cross-entropy (−log p) gradient by −D.
// PairwiseReward does the same for the scalar scores of a value head.
//
// Semantics follow LLaMA Factory's CustomDPOTrainer and TRL's DPOTrainer:
// sigmoid and hinge use summed log-probs, ipo, orpo and simpo use the average
// per token (Sum/Count); the batch loss is the mean over pairs, and every
// gradient returned is of that mean. The reference model's log-probs are
// inputs only: nothing is differentiated with respect to them.
//
// The package is float64 arithmetic on the host. It does not run a model,
// gather log-probs from logits, or know about tensors, backends, batches on a
// device or the training loop; it has no dependency on other lathe packages.
package align
