"""Training: data, timm's recipe pieces, the one loop, and the commands built on it (learn, finetune, calibrate).

Importing this package is cheap: its modules load torch only when imported themselves.
"""
