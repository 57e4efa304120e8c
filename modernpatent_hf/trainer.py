"""Training: the Trainers, the callback that keeps a resumed run from training past its end, Hub pushes.

:class:`ResumableTrainer` (the base of both recipes' trainers) saves no pickle and trains no step past the
end on resume; :class:`PatentTrainer` adds the CPC label space, the collator and the metrics, and saves the
label space and a model card with every checkpoint. Their arguments live in :mod:`modernpatent_hf.configs`,
what is written into run and checkpoint directories in :mod:`modernpatent_hf.checkpoints`, the model card
in :mod:`modernpatent_hf.model_card`. The tokenized patents and the multi-label collator are in
:mod:`modernpatent_hf.training_data`, the streaming F1@k evaluation (:class:`PatentMetricsComputer`) in
:mod:`modernpatent_hf.eval_metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import SequentialSampler
from transformers import PreTrainedTokenizerBase, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import HubStrategy, PredictionOutput, SaveStrategy, TrainOutput
from transformers.utils import PushInProgress, hf_api

from .checkpoints import RESULTS_FILE, latest_metrics, save_training_args_as_json
from .cpc import LABEL_SPACE_FILE, CpcLabelSpace
from .eval_metrics import PatentMetricsComputer
from .model_card import ModelCardInfo, build_model_card
from .thresholds import THRESHOLDS_FILE
from .training_data import MultiLabelCollator

logger = logging.getLogger(__name__)

# Outputs of our models that are not the subclass logits: evaluation must not collect them.
NON_LOGIT_OUTPUTS = ["class_logits", "section_logits", "hidden_states", "attentions", "pooler_output"]
# Module names of the patent classifiers' head (see modeling_modernpatent.HierarchicalPatentClassificationMixin).
HEAD_MODULES = frozenset({"head", "classifier"})

# What a push uploads from a model folder (huggingface_hub glob patterns, matched against paths in the folder):
# the weights and config, the tokenizer, the label space and tuned thresholds, the remote code, the card and the
# results. Top level only (HUB_IGNORE_PATTERNS): never the prepared data (OUTPUT_DIR/data), TensorBoard runs,
# checkpoints or anything else a run leaves in its output directory.
HUB_ALLOW_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    LABEL_SPACE_FILE,
    THRESHOLDS_FILE,
    "*.py",
    "README.md",
    RESULTS_FILE,
)
HUB_IGNORE_PATTERNS = ("*/*",)


def is_head_parameter(name: str) -> bool:
    """Whether a parameter name belongs to the patent head or classifier (new weights), not to the encoder.

    Module names, not prefixes, so the names of LoRA-wrapped models (``base_model.model.classifier.modules_to_save...``)
    match too.
    """
    return bool(HEAD_MODULES & set(name.split(".")))


class NoStepPastMaxStepsCallback(TrainerCallback):
    """Ends a ``train()`` call that starts at ``max_steps`` before it trains a step.

    A run relaunched from a checkpoint that already reached ``max_steps`` (a job killed after its last checkpoint,
    before its final save) would train one step more: transformers 5.x checks for the end only after a step.
    While :attr:`resumed_at_max_steps` (set at the start of each ``train()`` call), :class:`ResumableTrainer`
    hands the training loop no batch and reports the call's ``train_loss`` as NaN.
    """

    def __init__(self) -> None:
        self.resumed_at_max_steps = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.resumed_at_max_steps = state.global_step >= state.max_steps > 0
        if self.resumed_at_max_steps:
            logger.warning(
                "the checkpoint resumed from is at step %d of %d: nothing left to train",
                state.global_step,
                state.max_steps,
            )
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.resumed_at_max_steps:
            # An epoch that trained nothing is neither logged, evaluated nor saved: the checkpoint resumed from holds its state.
            control.should_log = control.should_evaluate = control.should_save = False
        return control


class ResumableTrainer(Trainer):
    """The `Trainer` both recipes build on: checkpoints without pickles, and resumes that train no extra step.

    Every saved directory holds the training arguments as ``training_args.json`` in place of the Trainer's
    pickled ``training_args.bin``. A run relaunched from a checkpoint that already reached ``max_steps``
    trains nothing more (:class:`NoStepPastMaxStepsCallback`).
    Pushes to the Hub (:meth:`push_to_hub`, and during training) upload only :data:`HUB_ALLOW_PATTERNS` of a
    model folder, never the prepared data or the rest of the output directory. Takes the Trainer's arguments by keyword.
    """

    def __init__(self, **trainer_kwargs: Any):
        super().__init__(**trainer_kwargs)
        self.max_steps_callback = NoStepPastMaxStepsCallback()
        self.add_callback(self.max_steps_callback)

    def train(self, resume_from_checkpoint: Union[str, bool, None] = None, **kwargs: Any) -> TrainOutput:
        output = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.max_steps_callback.resumed_at_max_steps:
            # This call trained no step: its training loss is NaN, not the 0 the Trainer would divide out.
            output = output._replace(training_loss=float("nan"))
        return output

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device) -> Tuple[list, Any]:
        """The Trainer's next batches; none in a call resumed at ``max_steps``, so that it runs no optimizer step."""
        if self.max_steps_callback.resumed_at_max_steps:
            return [], None
        return super().get_batch_samples(epoch_iterator, num_batches, device)

    def log(self, logs: Dict[str, float], start_time: Optional[float] = None) -> None:
        if "train_loss" in logs and self.max_steps_callback.resumed_at_max_steps:
            logs["train_loss"] = float("nan")  # as in train(): no step, no training loss
        super().log(logs, start_time)

    def writes_model_directory(self) -> bool:
        """Whether :meth:`save_model` writes the model's own files into its directory.

        Not under FSDP with a sharded state dict: its checkpoints hold the model in the shards saved with the
        optimizer, and the final save writes nothing.
        """
        return not self.is_fsdp_enabled or "FULL_STATE_DICT" in str(self.accelerator.state.fsdp_plugin.state_dict_type)

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """As ``Trainer.save_model`` (checkpoints included), with ``training_args.json`` in place of ``training_args.bin``."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save and self.writes_model_directory():
            save_training_args_as_json(output_dir if output_dir is not None else self.args.output_dir, self.args)

    def push_to_hub(
        self,
        commit_message: Optional[str] = "End of training",
        blocking: bool = True,
        token: Optional[str] = None,
        revision: Optional[str] = None,
        private: Optional[bool] = None,
        **kwargs: Any,
    ) -> Any:
        """Save the model, write its card and upload the model folder's published files to ``args.hub_model_id``.

        As ``Trainer.push_to_hub`` (same arguments, ``kwargs`` go to :meth:`create_model_card`), except what is
        uploaded: only :data:`HUB_ALLOW_PATTERNS` at the top of ``args.output_dir``. The Trainer's upload skips
        only ``_*`` and ``checkpoint-*``, so it would publish the prepared data (``OUTPUT_DIR/data``), TensorBoard
        runs and whatever else lies in the output directory. Returns the upload's ``CommitInfo`` (a ``Future``
        of it with ``blocking=False``), None on processes other than the main one.
        """
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=private)
        # Every process takes part in the save (TPU, ZeRO-3); only the main one writes and uploads.
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        self.wait_for_checkpoint_push()
        return self._upload_model_folder(
            self.args.output_dir,
            commit_message,
            token=token,
            blocking=blocking,
            revision=revision if revision is not None else self.args.hub_revision,
        )

    def _upload_model_folder(
        self, folder: str, commit_message: Optional[str], token: Optional[str], blocking: bool, revision: Optional[str]
    ) -> Any:
        """Upload the published files of a model folder (:data:`HUB_ALLOW_PATTERNS`, top level) to ``self.hub_model_id``."""
        return hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=folder,
            commit_message=commit_message,
            token=token,
            run_as_future=not blocking,
            revision=revision,
            # Lists, and new ones: upload_folder extends ignore_patterns in place.
            allow_patterns=list(HUB_ALLOW_PATTERNS),
            ignore_patterns=list(HUB_IGNORE_PATTERNS),
        )

    def wait_for_checkpoint_push(self) -> None:
        """Wait until the push of a checkpoint during training (:meth:`_push_from_checkpoint`) is done."""
        push = getattr(self, "push_in_progress", None)
        if push is not None and not push.is_done():
            logger.info("waiting for the push of the last checkpoint to finish")
            push.wait_until_done()

    # Private override, as transformers' docs allow ("may change without notice"): no public hook replaces the pushes during training.
    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """The pushes during training (``push_to_hub`` with ``hub_strategy`` other than ``end``), as safe as :meth:`push_to_hub`.

        The Trainer copies the checkpoint's weights into the output directory (with a pickled ``training_args.bin``)
        and uploads that directory skipping only ``_*`` and ``checkpoint-*``; here the checkpoint's own published
        files (:data:`HUB_ALLOW_PATTERNS`: weights, tokenizer, label space, remote code, card) are uploaded from the
        checkpoint folder. ``hub_strategy`` ``checkpoint`` / ``all_checkpoints`` still upload the whole checkpoint
        (optimizer and RNG states included) to ``last-checkpoint`` / ``checkpoint-N``, as asked.
        """
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        # While the previous push is running, skip this one unless hub_always_push (as the Trainer does).
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if self.args.save_strategy == SaveStrategy.STEPS:
            commit_message = f"Training in progress, step {self.state.global_step}"
        else:
            commit_message = f"Training in progress, epoch {int(self.state.epoch)}"
        jobs = [
            self._upload_model_folder(
                checkpoint_folder,
                commit_message,
                token=self.args.hub_token,
                blocking=False,
                revision=self.args.hub_revision,
            )
        ]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = (
                "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT else Path(checkpoint_folder).name
            )
            jobs.append(
                hf_api().upload_folder(
                    repo_id=self.hub_model_id,
                    folder_path=checkpoint_folder,
                    path_in_repo=path_in_repo,
                    commit_message=commit_message + ", checkpoint",
                    token=self.args.hub_token,
                    run_as_future=True,
                    revision=self.args.hub_revision,
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)


class PatentTrainer(ResumableTrainer):
    """A `Trainer` for CPC classification.

    Accepts a :class:`~modernpatent_hf.cpc.CpcLabelSpace`; sets the multi-label collator and streaming
    F1@k metrics when none are given; saves ``label_space.json`` and a model card
    (:func:`~modernpatent_hf.model_card.build_model_card`, from ``model_card_info`` and the metrics) with every
    checkpoint, so each one is self-describing and loadable; ``create_model_card`` (run by :meth:`push_to_hub`)
    writes that same card. Takes its arguments, and the Trainer's, by keyword.
    """

    def __init__(
        self,
        *,
        label_space: CpcLabelSpace,
        model_card_info: Optional[ModelCardInfo] = None,
        args: Optional[TrainingArguments] = None,
        compute_metrics: Optional[Any] = None,
        data_collator: Optional[Any] = None,
        processing_class: Optional[PreTrainedTokenizerBase] = None,
        **trainer_kwargs: Any,
    ):
        self.label_space = label_space
        self.model_card_info = model_card_info
        if compute_metrics is None:
            compute_metrics = PatentMetricsComputer.from_training_args(label_space, args)
        if data_collator is None and processing_class is not None:
            data_collator = MultiLabelCollator(processing_class, len(label_space))
        super().__init__(
            args=args,
            compute_metrics=compute_metrics,
            data_collator=data_collator,
            processing_class=processing_class,
            **trainer_kwargs,
        )

    def set_tuned_thresholds(self, per_label_thresholds: np.ndarray) -> None:
        """From the next evaluation on, also report micro and macro F1 at these per-label thresholds (``*_f1_tuned``).

        ``compute_metrics`` becomes a new :class:`PatentMetricsComputer` built from the training arguments, as the
        default one is, with ``tuned_thresholds``.
        """
        self.compute_metrics = PatentMetricsComputer.from_training_args(
            self.label_space, self.args, tuned_thresholds=per_label_thresholds
        )

    # Private override, as transformers' docs allow ("may change without notice"): no public hook chooses the evaluation sampler.
    def _get_eval_sampler(self, eval_dataset: Dataset) -> Optional[torch.utils.data.Sampler]:
        """Evaluation and prediction in dataset order, whatever ``train_sampling_strategy`` says.

        transformers applies ``group_by_length`` to evaluation too, so ``predict`` returned its rows shuffled
        by length: predictions no longer lined up with the dataset (metrics were right, since each batch keeps
        its own labels). Distributed runs keep the Trainer's sequential sharding (no sampler).
        """
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 and eval_dataset is not None else None

    def create_optimizer(self, model: Optional[torch.nn.Module] = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer, with the head and classifier in their own group when ``head_learning_rate`` is set.

        That group has ``head_learning_rate`` and no weight decay (weight decay pulls new weights towards 0, and
        the classifier bias holds the label prior); the LR scheduler scales it like the others.
        """
        optimizer = super().create_optimizer(model)
        head_learning_rate = getattr(self.args, "head_learning_rate", None)
        if head_learning_rate is None:
            return optimizer
        model = self.model if model is None else model
        head_parameters = [
            parameter
            for name, parameter in model.named_parameters()
            if parameter.requires_grad and is_head_parameter(name)
        ]
        if not head_parameters:
            raise ValueError("head_learning_rate is set but the model has no trainable head or classifier parameters")
        head_ids = {id(parameter) for parameter in head_parameters}
        for group in optimizer.param_groups:
            group["params"] = [parameter for parameter in group["params"] if id(parameter) not in head_ids]
        optimizer.param_groups[:] = [group for group in optimizer.param_groups if group["params"]]
        optimizer.add_param_group({"params": head_parameters, "lr": head_learning_rate, "weight_decay": 0.0})
        return optimizer

    def evaluate(
        self,
        eval_dataset: Optional[Dataset] = None,
        ignore_keys: Optional[List[str]] = None,
        metric_key_prefix: str = "eval",
    ) -> Dict[str, float]:
        return super().evaluate(
            eval_dataset, ignore_keys=ignore_keys or NON_LOGIT_OUTPUTS, metric_key_prefix=metric_key_prefix
        )

    def predict(
        self, test_dataset: Dataset, ignore_keys: Optional[List[str]] = None, metric_key_prefix: str = "test"
    ) -> PredictionOutput:
        return super().predict(
            test_dataset, ignore_keys=ignore_keys or NON_LOGIT_OUTPUTS, metric_key_prefix=metric_key_prefix
        )

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """As :meth:`ResumableTrainer.save_model`, with ``label_space.json`` and the model card beside the model."""
        super().save_model(output_dir, _internal_call=_internal_call)
        if not (self.args.should_save and self.writes_model_directory()):
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        self.label_space.save(os.path.join(output_dir, LABEL_SPACE_FILE))
        self.write_model_card(output_dir)

    def write_model_card(self, directory: str, model_name: Optional[str] = None) -> None:
        """Write the model card into ``directory``/README.md.

        Its metrics are the directory's ``all_results.json`` when it has one (the recipe writes it before its
        final save), else the latest evaluation in the log history (checkpoints saved during training).
        """
        results_path = os.path.join(directory, RESULTS_FILE)
        if os.path.isfile(results_path):
            with open(results_path, encoding="utf-8") as handle:
                metrics = json.load(handle)
        else:
            metrics = latest_metrics(self.state.log_history)
        card = build_model_card(
            self.accelerator.unwrap_model(self.model),
            self.label_space,
            self.args,
            metrics,
            self.model_card_info,
            model_name=model_name,
            has_thresholds=os.path.isfile(os.path.join(directory, THRESHOLDS_FILE)),
        )
        card.save(os.path.join(directory, "README.md"))

    def create_model_card(
        self,
        language: Optional[str] = None,
        license: Optional[str] = None,
        tags: Union[str, List[str], None] = None,
        model_name: Optional[str] = None,
        finetuned_from: Optional[str] = None,
        tasks: Union[str, List[str], None] = None,
        dataset_tags: Union[str, List[str], None] = None,
        dataset: Union[str, List[str], None] = None,
        dataset_args: Union[str, List[str], None] = None,
    ) -> None:
        """Write this trainer's CPC model card into ``args.output_dir`` (what ``Trainer.push_to_hub`` calls before uploading).

        The same card every save writes, not the Trainer's generic draft. ``language``, ``license``,
        ``finetuned_from`` (a Hub model id) and ``dataset_tags`` (Hub dataset ids; else ``dataset``) replace those
        of ``model_card_info``, and ``tags`` are added to its tags, for this and every later save. ``tasks`` and
        ``dataset_args`` are accepted as the Trainer's and not used: the task is always CPC subclass classification.
        """
        if not self.is_world_process_zero():
            return
        dataset_ids = dataset_tags if dataset_tags is not None else dataset
        changes = {
            "language": language,
            "license": license,
            "base_model": finetuned_from,
            "hub_datasets": [dataset_ids] if isinstance(dataset_ids, str) else dataset_ids,
        }
        changes = {name: value for name, value in changes.items() if value is not None}
        info = self.model_card_info or ModelCardInfo()
        new_tags = [tag for tag in ([tags] if isinstance(tags, str) else tags or []) if tag not in info.tags]
        if changes or new_tags:
            self.model_card_info = dataclasses.replace(info, tags=[*info.tags, *new_tags], **changes)
        self.write_model_card(self.args.output_dir, model_name=model_name)
