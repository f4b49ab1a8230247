from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Team(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=50)
    score = fields.IntField(default=0)

    class Meta:
        table = "eco_tortoise_team"


class Player(Model):
    id = fields.UUIDField(primary_key=True)
    name = fields.CharField(max_length=50)
    team: fields.ForeignKeyRelation[Team] = fields.ForeignKeyField(
        "eco.Team", related_name="players"
    )

    class Meta:
        table = "eco_tortoise_player"
