from __future__ import annotations

import uuid

from django.db import models


class Author(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    born = models.IntegerField(null=True)
    nickname = models.CharField(max_length=50, null=True)  # added by migration 0003

    class Meta:
        app_label = "djangoapp"


class Counter(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    value = models.IntegerField()

    class Meta:
        app_label = "djangoapp"
