"""The engine's Tasks (`seqmodels.training.Task`) that more than one caller builds: the
GPT and BERT pre-training and fine-tuning tasks (`tasks.gpt`, `tasks.bert`) and what the
two share for going from a pre-trained run to a fine-tuned one (`tasks.transfer`)."""
