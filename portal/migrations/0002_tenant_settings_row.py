from django.db import migrations


def create_row(apps, schema_editor):
    TenantSettings = apps.get_model("portal", "TenantSettings")
    TenantSettings.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("portal", "0001_folders_roles_tenant")]

    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
