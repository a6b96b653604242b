FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN STATIC_ROOT=/app/static python manage.py collectstatic --no-input
ENV STATIC_ROOT=/app/static
EXPOSE 8000
CMD ["gunicorn", "signal_project.wsgi:application", "-b", "0.0.0.0:8000", "-w", "4"]
