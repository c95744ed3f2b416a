from django.urls import path

from . import views

urlpatterns = [
    path("users", views.create_user, name="create-user"),
    path("users/<str:user_id>/insights", views.user_insights, name="user-insights"),
]
