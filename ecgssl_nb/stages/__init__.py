"""Running a stage of the method: settings resolved, the run folder claimed, resumed from its
checkpoint, checkpointed on a cadence, logged and summarised (`stage`), for pre-training
(`pretrain`: `core.dino`) and fine-tuning (`finetune`: `core.classify`)."""
