"""Post-training quantization of the student: GPTQ, bitsandbytes NF4 / int8 and torchao int8."""
