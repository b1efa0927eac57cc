"""Training retrieval models from the catalogue's accepted localizations (AstroLoc's recipe).

`pairs` turns accepted photos into photo/satellite-block pairs split by place, `losses` holds
AstroLoc's two losses, `checkpoint` the resumable pickle-free checkpoints, `astroloc` the
training loop and `card` the model card and the promotion to default weights.
"""
