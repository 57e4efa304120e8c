"""CPC patent classifiers: a ModernBERT (or BERT) encoder, pooling, a classification head, hierarchy-aware outputs.

This file is copied next to saved checkpoints as remote code (``trust_remote_code=True``), so it imports only torch,
transformers and its siblings ``configuration_modernpatent.py`` and ``losses.py``, and does no I/O.

Module names follow stock ``ModernBertForSequenceClassification`` (``model``, ``head``, ``drop``, ``classifier``), so
a stock ModernBERT checkpoint loads its encoder into ``model`` and, from a masked-LM checkpoint, its prediction
head's dense + LayerNorm into ``head`` (exactly what the seed work's stock classifier did); only ``classifier`` (and
``head`` for a bare ``ModernBertModel`` checkpoint) starts from random weights.
"""

import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from transformers import BertModel, BertPreTrainedModel, ModernBertModel, ModernBertPreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .configuration_modernpatent import BertPatentConfig, ModernBertPatentConfig
from .losses import LabelHierarchy, label_log_odds, patent_classification_loss


@dataclass
class HierarchicalClassifierOutput(ModelOutput):
    """Output of the patent classifiers.

    loss: the training loss (``config.loss_type``), when labels were given.
    logits: subclass logits [B, L] (independent sigmoids; index i is ``config.id2label[i]``).
    class_logits / section_logits: [B, C] / [B, S] scores of the CPC classes / sections (sorted codes, see
        ``config.cpc_hierarchy()``): the max over the logits of their member subclasses.
    hidden_states / attentions: the encoder's, when requested.
    pooler_output: [B, H] the pooled encoder output the head classifies (``config.pooling``), what
        ``PatentClassifier.embed`` gives before normalizing: one forward pass gives a patent's scores and its vector.
    """

    loss: Optional[torch.FloatTensor] = None
    logits: Optional[torch.FloatTensor] = None
    class_logits: Optional[torch.FloatTensor] = None
    section_logits: Optional[torch.FloatTensor] = None
    hidden_states: Optional[Tuple[torch.FloatTensor, ...]] = None
    attentions: Optional[Tuple[torch.FloatTensor, ...]] = None
    pooler_output: Optional[torch.FloatTensor] = None


class PatentPredictionHead(nn.Module):
    """dense -> GELU -> LayerNorm on the pooled vector (stock ModernBERT's prediction head, same parameter names)."""

    def __init__(self, hidden_size: int, dense_bias: bool, norm_eps: float, norm_bias: bool, activation: str = "gelu"):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size, bias=dense_bias)
        self.act = ACT2FN[activation]
        self.norm = nn.LayerNorm(hidden_size, eps=norm_eps, bias=norm_bias)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(pooled)))


def pool_hidden_states(
    hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor], pooling: str
) -> torch.Tensor:
    """[B, T, H] -> [B, H]: the first token (``"cls"``) or the mean over non-padding tokens (``"mean"``).

    The mean accumulates in float32: a bf16 sum over hundreds of tokens loses precision.
    """
    if pooling == "cls":
        return hidden_states[:, 0]
    if attention_mask is None:
        return hidden_states.float().mean(dim=1).to(hidden_states.dtype)
    mask = attention_mask.to(torch.float32).unsqueeze(-1)
    summed = (hidden_states.float() * mask).sum(dim=1)
    return (summed / mask.sum(dim=1).clamp(min=1.0)).to(hidden_states.dtype)


def packed_segment_ids(cu_seq_lens: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """[T] index of the segment each token of a packed row belongs to (``cu_seq_lens`` [S + 1] starts at 0)."""
    tokens = torch.arange(num_tokens, device=cu_seq_lens.device, dtype=cu_seq_lens.dtype)
    return torch.searchsorted(cu_seq_lens[1:].contiguous(), tokens, right=True)


def packed_position_ids(cu_seq_lens: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """[1, T] positions of a packed row, restarting at 0 at every segment start."""
    segments = packed_segment_ids(cu_seq_lens, num_tokens)
    tokens = torch.arange(num_tokens, device=cu_seq_lens.device)
    return (tokens - cu_seq_lens.long()[segments]).unsqueeze(0)


def pool_packed_hidden_states(hidden_states: torch.Tensor, cu_seq_lens: torch.Tensor, pooling: str) -> torch.Tensor:
    """[1, T, H] hidden states of a packed row -> [S, H], one vector per segment of ``cu_seq_lens`` ([S + 1]):
    the segment's first token (``"cls"``) or the mean over its tokens (``"mean"``, accumulated in float32).

    Empty segments (static-shape padding, at the end) give a row to be dropped, never an error.
    """
    hidden = hidden_states[0]
    num_tokens = hidden.shape[0]
    starts = cu_seq_lens[:-1].long()
    if pooling == "cls":
        return hidden[starts.clamp(max=num_tokens - 1)]
    segments = packed_segment_ids(cu_seq_lens, num_tokens)
    # One more row for tokens past the last boundary, if any: they belong to no segment.
    sums = hidden.new_zeros((starts.shape[0] + 1, hidden.shape[1]), dtype=torch.float32).index_add_(
        0, segments, hidden.float()
    )
    lengths = (cu_seq_lens[1:] - cu_seq_lens[:-1]).to(torch.float32).clamp(min=1.0).unsqueeze(-1)
    return (sums[:-1] / lengths).to(hidden.dtype)


def max_over_groups(logits: torch.Tensor, group_of: torch.Tensor, num_groups: int) -> torch.Tensor:
    """[B, L] subclass logits -> [B, num_groups]: for each group (class or section), the max over its members.

    Why max: ``sigmoid(max z) = max sigmoid(z)`` is the probability of the group's most likely member, a lower bound
    on P(any member) that does not grow with the number of members (logsumexp adds up to log(n) for big classes,
    which would favour large classes), and the top-1 group is the group of the top-1 subclass, matching how the
    metrics score classes and sections. Gradients flow to the best member of each group.
    """
    index = group_of.unsqueeze(0).expand(logits.shape[0], -1)
    scores = logits.new_full((logits.shape[0], num_groups), float("-inf"))
    return scores.scatter_reduce(1, index, logits, reduce="amax", include_self=True)


class HierarchicalPatentClassificationMixin:
    """Head, pooling, hierarchy and loss shared by the ModernBERT and BERT patent classifiers.

    The hierarchy buffers (``subclass_to_class``, ``subclass_to_section``) are derived from the config's labels and
    not saved in the state dict (``persistent=False``). Loss type, hierarchy and distance weights and class weights
    are read from the config at every forward, so the config a checkpoint saves is what trained it.
    """

    # The loss is a mean over patents and labels, not a sum to be divided by `num_items_in_batch`: tell the Trainer
    # (which otherwise infers loss kwargs from `**kwargs` in forward and then skips its gradient-accumulation scaling).
    accepts_loss_kwargs = False

    def _build_patent_head(self, dense_bias: bool, norm_eps: float, norm_bias: bool, dropout: float) -> None:
        hierarchy = self.config.cpc_hierarchy()
        self.num_cpc_classes = len(hierarchy["classes"])
        self.num_cpc_sections = len(hierarchy["sections"])
        self.head = PatentPredictionHead(self.config.hidden_size, dense_bias, norm_eps, norm_bias)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.config.hidden_size, self.config.num_labels)
        for name, value in self._hierarchy_buffers().items():
            self.register_buffer(name, value, persistent=False)

    def _hierarchy_buffers(self) -> dict:
        hierarchy = self.config.cpc_hierarchy()
        subclass_to_class = torch.tensor(hierarchy["subclass_to_class"], dtype=torch.long)
        subclass_to_section = torch.tensor(hierarchy["subclass_to_section"], dtype=torch.long)
        return {
            "subclass_to_class": subclass_to_class,
            "subclass_to_section": subclass_to_section,
        }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        super()._init_weights(module)
        if module is self:
            self._init_patent_head()

    def _init_patent_head(self) -> None:
        """Fill the hierarchy buffers (models are built on the meta device) and initialize the output layer."""
        for name, value in self._hierarchy_buffers().items():
            init.copy_(getattr(self, name), value)
        # As stock ModernBERT's classifiers: a truncated normal with std hidden_size ** -0.5, zero bias.
        std = self.config.hidden_size**-0.5
        init.trunc_normal_(self.classifier.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
        init.zeros_(self.classifier.bias)

    def init_classifier_bias_from_prior(self, label_frequencies: Sequence[float]) -> None:
        """Set the classifier bias to each label's log-odds ``log(p / (1 - p))`` of its training frequency ``p``.

        A new head with zero bias predicts 0.5 for every label, so its first hundreds of steps only learn the
        label prior, and with one shared gradient for all patents, models ended there (the same top-5 for every
        patent). Starting at the prior costs no steps: from the first step the gradient is what the text adds.
        Frequencies are clipped to [1e-6, 1 - 1e-6] so that a label never or always seen gets a finite bias.
        """
        log_odds = label_log_odds(label_frequencies)
        if log_odds.shape != self.classifier.bias.shape:
            raise ValueError(
                f"label_frequencies has {log_odds.numel()} values but the classifier has {self.classifier.bias.numel()} labels"
            )
        with torch.no_grad():
            self.classifier.bias.copy_(log_odds.to(self.classifier.bias.dtype))

    def _classify(
        self, hidden_states, attention_mask, labels, encoder_outputs, cu_seq_lens=None
    ) -> HierarchicalClassifierOutput:
        """Pool, classify, score the hierarchy; a packed row (``cu_seq_lens`` given) gives one output row per segment."""
        if cu_seq_lens is not None:
            pooled = pool_packed_hidden_states(hidden_states, cu_seq_lens, self.config.pooling)
        else:
            pooled = pool_hidden_states(hidden_states, attention_mask, self.config.pooling)
        logits = self.classifier(self.drop(self.head(pooled)))
        return HierarchicalClassifierOutput(
            loss=None if labels is None else self.compute_loss(logits, labels),
            logits=logits,
            class_logits=max_over_groups(logits, self.subclass_to_class, self.num_cpc_classes),
            section_logits=max_over_groups(logits, self.subclass_to_section, self.num_cpc_sections),
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
            pooler_output=pooled,
        )

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of ``config.loss_type`` for subclass logits and float multi-hot labels [B, L]."""
        class_weights = self.config.class_weights
        if class_weights is not None:
            class_weights = torch.tensor(class_weights, dtype=torch.float32, device=logits.device)
        return patent_classification_loss(
            logits,
            labels,
            loss_type=self.config.loss_type,
            hierarchy=LabelHierarchy(self.subclass_to_class, self.subclass_to_section, self.config.distance_weights),
            hierarchy_weight=self.config.hierarchy_weight,
            class_weights=class_weights,
        )

    def save_pretrained(self, save_directory: Union[str, os.PathLike], *args: Any, **kwargs: Any) -> Any:
        """``PreTrainedModel.save_pretrained``, with the encoder class (``encoder_class_name``) in ``auto_map`` for
        ``AutoModel``.

        ``register_for_auto_class`` records one auto class (AutoModelForSequenceClassification, this class);
        ``AutoModel`` loads the checkpoint's encoder (as for stock checkpoints), so its entry is added here. The
        modeling files are copied as remote code.
        """
        module_name = type(self).__module__.rsplit(".", 1)[-1]
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map["AutoModel"] = f"{module_name}.{self.encoder_class_name}"
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)


class ModernBertForHierarchicalPatentClassification(HierarchicalPatentClassificationMixin, ModernBertPreTrainedModel):
    """ModernBERT encoder + pooling (``config.pooling``) + dense/GELU/LayerNorm head + dropout + linear to the CPC
    subclasses, with class/section scores derived through the hierarchy and the loss of ``config.loss_type``.

    Works with ``sdpa``, ``eager`` and (where installed) ``flash_attention_2`` attention, gradient checkpointing
    and bf16.
    """

    config_class = ModernBertPatentConfig
    config: ModernBertPatentConfig
    encoder_class_name = "ModernBertPatentModel"  # what AutoModel loads from a saved checkpoint
    # The masked-LM decoder of a stock checkpoint has no place in a classifier.
    _keys_to_ignore_on_load_unexpected = [r"^decoder\."]

    def __init__(self, config: ModernBertPatentConfig):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self._build_patent_head(
            dense_bias=config.classifier_bias,
            norm_eps=config.norm_eps,
            norm_bias=config.norm_bias,
            dropout=config.classifier_dropout,
        )
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> HierarchicalClassifierOutput:
        """``labels``: float multi-hot [B, L]; when given, the output carries the loss.

        A packed row (``input_ids`` [1, T] with ``cu_seq_lens_q``/``cu_seq_lens_k``/``max_length_q``/``max_length_k``,
        see ``modernpatent_hf.packing``; needs the packed attention) gives one output row per sequence; labels are
        then [S, L]. Position ids restart per sequence (derived from ``cu_seq_lens_q`` when not given).
        """
        cu_seq_lens = kwargs.get("cu_seq_lens_q")
        if cu_seq_lens is not None:
            length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
            if position_ids is None:
                position_ids = packed_position_ids(cu_seq_lens, length)
            if attention_mask is None:  # no dense masks: the attention function keeps the sequences apart
                attention_mask = {layer_type: None for layer_type in set(self.config.layer_types)}
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return self._classify(outputs.last_hidden_state, attention_mask, labels, outputs, cu_seq_lens)


class BertForHierarchicalPatentClassification(HierarchicalPatentClassificationMixin, BertPreTrainedModel):
    """The BERT counterpart (PatentBERT-style baseline, CLS pooling by default): same head, pooling and loss.

    The encoder is ``BertModel`` without its pooler (the head replaces BERT's tanh pooler), under ``bert`` as in
    stock BERT classifiers, so BERT checkpoints load their encoder.
    """

    config_class = BertPatentConfig
    config: BertPatentConfig
    encoder_class_name = "BertPatentModel"  # what AutoModel loads from a saved checkpoint
    _keys_to_ignore_on_load_unexpected = [r"^cls\.", r"^(bert\.)?pooler\."]

    def __init__(self, config: BertPatentConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self._build_patent_head(dense_bias=True, norm_eps=config.layer_norm_eps, norm_bias=True, dropout=dropout)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> HierarchicalClassifierOutput:
        """``labels``: float multi-hot [B, L]; when given, the output carries the loss. A packed row as for
        :class:`ModernBertForHierarchicalPatentClassification` (``token_type_ids`` default to zeros)."""
        cu_seq_lens = kwargs.get("cu_seq_lens_q")
        if cu_seq_lens is not None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            if position_ids is None:
                position_ids = packed_position_ids(cu_seq_lens, reference.shape[1])
            if (
                token_type_ids is None
            ):  # BERT's buffered default covers max_position_embeddings tokens, not a packed row
                token_type_ids = torch.zeros_like(reference, dtype=torch.long)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        return self._classify(outputs.last_hidden_state, attention_mask, labels, outputs, cu_seq_lens)


def _encoder_output(outputs: Any, attention_mask: Optional[torch.Tensor], pooling: str) -> BaseModelOutputWithPooling:
    return BaseModelOutputWithPooling(
        last_hidden_state=outputs.last_hidden_state,
        pooler_output=pool_hidden_states(outputs.last_hidden_state, attention_mask, pooling),
        hidden_states=outputs.hidden_states,
        attentions=outputs.attentions,
    )


class ModernBertPatentModel(ModernBertPreTrainedModel):
    """The encoder of a ModernBERT patent classifier: what ``AutoModel`` loads from its checkpoint.

    The encoder sits under ``model`` as in the classifier, so the classifier's encoder weights load as they are
    and its head and classifier are left out. ``last_hidden_state`` [B, T, H] is what
    ``pipeline("feature-extraction")`` returns; ``pooler_output`` [B, H] is pooled as the classifier pools
    (``config.pooling``): the patent's embedding (L2-normalize it for cosine search).
    """

    config_class = ModernBertPatentConfig
    config: ModernBertPatentConfig
    _keys_to_ignore_on_load_unexpected = [r"^(head|drop|classifier|decoder)\."]

    def __init__(self, config: ModernBertPatentConfig):
        super().__init__(config)
        self.model = ModernBertModel(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
        return _encoder_output(outputs, attention_mask, self.config.pooling)


class BertPatentModel(BertPreTrainedModel):
    """The encoder of a BERT patent classifier (``bert``, without BERT's pooler): what ``AutoModel`` loads from its
    checkpoint; outputs as :class:`ModernBertPatentModel`'s."""

    config_class = BertPatentConfig
    config: BertPatentConfig
    _keys_to_ignore_on_load_unexpected = [r"^(head|drop|classifier|cls)\.", r"^(bert\.)?pooler\."]

    def __init__(self, config: BertPatentConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling:
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            return_dict=True,
            **kwargs,
        )
        return _encoder_output(outputs, attention_mask, self.config.pooling)


ModernBertForHierarchicalPatentClassification.register_for_auto_class("AutoModelForSequenceClassification")
BertForHierarchicalPatentClassification.register_for_auto_class("AutoModelForSequenceClassification")
ModernBertPatentModel.register_for_auto_class("AutoModel")
BertPatentModel.register_for_auto_class("AutoModel")

# Names of the previous release, kept for one more release.
ModernPatentModel = ModernBertPatentModel
PatentClassifierMixin = HierarchicalPatentClassificationMixin
