"""Sibling folder names unique whatever their case, as the pages always
checked: the database now holds it for two requests at once too. Siblings
that differ only by case (possible before, through two requests at once)
are renamed first: the oldest keeps its name, each other gets " (2)",
" (3)"... Ids, paths and grants are unchanged."""

from collections import defaultdict

import django.db.models.functions.text
from django.conf import settings
from django.db import migrations, models


def rename_case_only_twins(apps, schema_editor):
    Folder = apps.get_model("portal", "Folder")
    longest = Folder._meta.get_field("name").max_length
    siblings = defaultdict(list)
    rows = Folder.objects.order_by("pk").values_list("pk", "parent_id", "kind", "name")
    for pk, parent_id, kind, name in rows:
        if parent_id is None and kind != "shared":
            continue  # personal workspaces are nobody's siblings
        siblings[(parent_id, name.lower())].append((pk, name))
    taken = set(siblings)
    for (parent_id, _), twins in siblings.items():
        for pk, name in twins[1:]:
            number = 2
            while True:
                suffix = f" ({number})"
                renamed = name[: longest - len(suffix)] + suffix
                if (parent_id, renamed.lower()) not in taken:
                    break
                number += 1
            taken.add((parent_id, renamed.lower()))
            Folder.objects.filter(pk=pk).update(name=renamed)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0009_deploy_audit_actions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="folder",
            name="folder_unique_name_in_parent",
        ),
        migrations.RemoveConstraint(
            model_name="folder",
            name="folder_unique_top_level_name",
        ),
        migrations.RunPython(rename_case_only_twins, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="folder",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"),
                models.F("parent"),
                name="folder_unique_name_in_parent",
            ),
        ),
        migrations.AddConstraint(
            model_name="folder",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"),
                condition=models.Q(("kind", "shared"), ("parent__isnull", True)),
                name="folder_unique_top_level_name",
            ),
        ),
    ]
