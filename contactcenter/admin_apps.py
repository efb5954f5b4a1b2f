from django.contrib.admin.apps import AdminConfig


class ContactCenterAdminConfig(AdminConfig):
    """Django's admin with our site (second factor, practice name). Kept apart from
    admin_site.py, which imports models, because this loads with INSTALLED_APPS."""

    default_site = "contactcenter.admin_site.ContactCenterAdminSite"
