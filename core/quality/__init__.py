"""Running a model's variants to judge them: accuracy and agreement, the open-set check fitted and measured."""
